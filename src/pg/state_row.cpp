// The state row codec: a lead's state (core::LeadState) to and from a row of leadscore.state_<key>, in any of
// the shapes the released schemas gave that table (state_row.h lists its columns).
#include "state_row.h"

namespace leadscore::pg {

void deconstruct(Datum array, Oid elemtype, Datum **elems, bool **nulls, int *n)
{
	int16 typlen;
	bool byval;
	char align;
	get_typlenbyvalalign(elemtype, &typlen, &byval, &align);
	deconstruct_array(DatumGetArrayTypeP(array), elemtype, typlen, byval, align, elems, nulls, n);
}

void row_tuple(HeapTupleHeader row, Oid relid, HeapTupleData *tuple)
{
	tuple->t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple->t_self);
	tuple->t_tableOid = relid;
	tuple->t_data = row;
}

// Whether a state row (a composite value) has the shape of its model's rules: not so while a
// configuration change is under way (the rules of an untracked table deleted, the recompute to come).
bool state_fits(const core::ModelSpec &spec, HeapTupleHeader row)
{
	bool fit_null, n_null;
	Datum fit = GetAttributeByNum(row, ColFit, &fit_null), n = GetAttributeByNum(row, ColEngN, &n_null);
	if (fit_null || n_null)
		return true;
	ArrayType *fit_array = DatumGetArrayTypeP(fit), *n_array = DatumGetArrayTypeP(n);
	return (size_t) ArrayGetNItems(ARR_NDIM(fit_array), ARR_DIMS(fit_array)) == spec.lead_rules.size() &&
	       (size_t) ArrayGetNItems(ARR_NDIM(n_array), ARR_DIMS(n_array)) == spec.event_rules.size();
}

// A state row as stored in its table (desc: the table's), or as a composite value (see state_from_row).
const CachedModel *state_from_tuple(const Cache *cache, HeapTuple tuple, TupleDesc desc, core::LeadState *state,
                                    Datum *key, RowExtras *extras)
{
	Datum values[kStateCols];
	bool nulls[kStateCols];
	if (desc->natts != kStateCols && desc->natts != ColStageAt && desc->natts != ColHotKey &&
	    desc->natts != ColNextChange && desc->natts != ColStage)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH), errmsg("leadscore: not a state row")));
	// A row built by a caller (_eval takes any record) must have the columns' types, the key's that of its
	// model: a Datum is never read as another type.
	static const Oid types[kStateCols] =
		{INT4OID,        InvalidOid,          BOOLOID,        FLOAT8ARRAYOID, INT8ARRAYOID,
	     FLOAT8ARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID, INT8OID,        TIMESTAMPTZOID,
	     TEXTOID,        TIMESTAMPTZOID,      TIMESTAMPTZOID, FLOAT8OID,      FLOAT8OID,
	     TIMESTAMPTZOID, TIMESTAMPTZOID};
	for (int c = 0; c < desc->natts; c++)
		if (c != ColLead - 1 && TupleDescAttr(desc, c)->atttypid != types[c])
			ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH), errmsg("leadscore: not a state row")));
	for (int c = desc->natts; c < kStateCols; c++)
		nulls[c] = true;
	heap_deform_tuple(tuple, desc, values, nulls);
	if (extras) {
		extras->next_change = nulls[ColNextChange - 1]
		                          ? std::nullopt
		                          : std::optional<core::Micros>(DatumGetInt64(values[ColNextChange - 1]));
		extras->hot_key = nulls[ColHotKey - 1] ? std::nullopt
		                                       : std::optional<double>(DatumGetFloat8(values[ColHotKey - 1]));
		extras->stage_at = nulls[ColStageAt - 1] ? std::nullopt
		                                         : std::optional<core::Micros>(DatumGetInt64(values[ColStageAt - 1]));
	}
	bool has_since = !nulls[ColStageSince - 1];
	int64 since = has_since ? DatumGetInt64(values[ColStageSince - 1]) : 0;
	bool has_reset = !nulls[ColResetAt - 1];
	int64 reset_at = has_reset ? DatumGetInt64(values[ColResetAt - 1]) : 0;

	const CachedModel *model = cache->model_by_state(DatumGetInt32(values[ColModel - 1]));
	*key = values[ColLead - 1];
	if (model && TupleDescAttr(desc, ColLead - 1)->atttypid != key_type(model->key).type)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
		                errmsg("leadscore: not a state row of model \"%s\"", model->spec.name.c_str())));
	if (!model || nulls[ColLead - 1])
		return nullptr;

	Datum *fit = nullptr, *eng_n = nullptr, *eng_w = nullptr, *eng_first = nullptr;
	bool *fit_nulls, *n_nulls, *w_nulls, *first_nulls;
	int n_fit = 0, n_n = 0, n_w = 0, n_first = 0;
	if (!nulls[ColFit - 1])
		deconstruct(values[ColFit - 1], FLOAT8OID, &fit, &fit_nulls, &n_fit);
	if (!nulls[ColEngN - 1])
		deconstruct(values[ColEngN - 1], INT8OID, &eng_n, &n_nulls, &n_n);
	if (!nulls[ColEngW - 1])
		deconstruct(values[ColEngW - 1], FLOAT8OID, &eng_w, &w_nulls, &n_w);
	if (!nulls[ColEngFirst - 1])
		deconstruct(values[ColEngFirst - 1], TIMESTAMPTZOID, &eng_first, &first_nulls, &n_first);
	char *stage = nulls[ColStage - 1] ? nullptr : TextDatumGetCString(values[ColStage - 1]);
	bool has_lead = DatumGetBool(values[ColHasLead - 1]);
	bool has_ref = !nulls[ColEngRef - 1], has_last = !nulls[ColLastActivity - 1];
	int64 ref = has_ref ? DatumGetInt64(values[ColEngRef - 1]) : 0;
	int64 last = has_last ? DatumGetInt64(values[ColLastActivity - 1]) : 0;
	int64 n_events = DatumGetInt64(values[ColNEvents - 1]);

	ls_cpp([&] {
		const core::ModelSpec &spec = model->spec;
		state->reset(spec);
		state->has_lead = has_lead;
		state->stage = stage ? std::optional<std::string>(stage) : std::nullopt;
		state->stage_since = has_since ? std::optional<core::Micros>(since) : std::nullopt;
		state->reset_at = has_reset ? std::optional<core::Micros>(reset_at) : std::nullopt;
		bool fresh = !fit && !eng_n; // a row just created by the Ensure statement
		if (fresh)
			return;
		if ((size_t) n_fit != spec.lead_rules.size() || (size_t) n_n != spec.event_rules.size() || n_w != n_n ||
		    n_first != n_n)
			throw core::Error("XX000", "leadscore: state of model \"" + spec.name + "\" does not match its rules (" +
			                               std::to_string(n_fit) + " fit and " + std::to_string(n_n) +
			                               " engagement values for " + std::to_string(spec.lead_rules.size()) +
			                               " lead and " + std::to_string(spec.event_rules.size()) +
			                               " event rules); run leadscore.recompute");
		for (int i = 0; i < n_fit; i++)
			state->fit[i] = DatumGetFloat8(fit[i]);
		for (int i = 0; i < n_n; i++) {
			state->n[i] = DatumGetInt64(eng_n[i]);
			state->w[i] = DatumGetFloat8(eng_w[i]);
			if (!first_nulls[i])
				state->first[i] = DatumGetInt64(eng_first[i]);
		}
		if (has_ref)
			state->ref = ref;
		if (has_last)
			state->last_activity = last;
		state->n_events = n_events;
	});
	return model;
}

const CachedModel *state_from_row(const Cache *cache, HeapTupleHeader row, core::LeadState *state, Datum *key,
                                  RowExtras *extras)
{
	TupleDesc desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(row), HeapTupleHeaderGetTypMod(row));
	HeapTupleData tuple;
	row_tuple(row, InvalidOid, &tuple);
	const CachedModel *model = state_from_tuple(cache, &tuple, desc, state, key, extras);
	ReleaseTupleDesc(desc);
	return model;
}

Datum make_array(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int16 typlen;
	bool byval;
	char align;
	get_typlenbyvalalign(elemtype, &typlen, &byval, &align);
	int dims[1] = {n}, lbs[1] = {1};
	if (n == 0)
		return PointerGetDatum(construct_empty_array(elemtype));
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, elemtype, typlen, byval, align));
}

HeapTuple state_to_tuple(TupleDesc desc, const CachedModel &model, Datum key, const core::LeadState &st,
                         std::optional<core::Micros> next_change, std::optional<double> hot_key, TimestampTz stage_at)
{
	const core::ModelSpec &spec = model.spec;
	Datum values[kStateCols];
	bool nulls[kStateCols] = {};
	int n_fit = (int) st.fit.size(), n = (int) st.n.size();
	Datum *fit = static_cast<Datum *>(palloc(sizeof(Datum) * (n_fit + 1)));
	Datum *eng_n = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
	Datum *eng_w = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
	Datum *eng_first = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
	bool *first_nulls = static_cast<bool *>(palloc(sizeof(bool) * (n + 1)));
	for (int i = 0; i < n_fit; i++)
		fit[i] = Float8GetDatum(st.fit[i]);
	for (int i = 0; i < n; i++) {
		eng_n[i] = Int64GetDatum(st.n[i]);
		eng_w[i] = Float8GetDatum(st.w[i]);
		first_nulls[i] = !st.first[i].has_value();
		eng_first[i] = first_nulls[i] ? (Datum) 0 : TimestampTzGetDatum(*st.first[i]);
	}
	values[ColModel - 1] = Int32GetDatum(model.state_id);
	values[ColLead - 1] = key;
	values[ColHasLead - 1] = BoolGetDatum(st.has_lead);
	values[ColFit - 1] = make_array(fit, nullptr, n_fit, FLOAT8OID);
	values[ColEngN - 1] = make_array(eng_n, nullptr, n, INT8OID);
	values[ColEngW - 1] = make_array(eng_w, nullptr, n, FLOAT8OID);
	values[ColEngFirst - 1] = make_array(eng_first, first_nulls, n, TIMESTAMPTZOID);
	nulls[ColEngRef - 1] = !st.ref.has_value();
	values[ColEngRef - 1] = st.ref ? TimestampTzGetDatum(*st.ref) : (Datum) 0;
	values[ColNEvents - 1] = Int64GetDatum(st.n_events);
	nulls[ColLastActivity - 1] = !st.last_activity.has_value();
	values[ColLastActivity - 1] = st.last_activity ? TimestampTzGetDatum(*st.last_activity) : (Datum) 0;
	nulls[ColStage - 1] = !st.stage.has_value();
	values[ColStage - 1] = st.stage ? CStringGetTextDatum(st.stage->c_str()) : (Datum) 0;
	nulls[ColNextChange - 1] = !next_change.has_value();
	values[ColNextChange - 1] = next_change ? TimestampTzGetDatum(*next_change) : (Datum) 0;
	nulls[ColResetAt - 1] = !st.reset_at.has_value();
	values[ColResetAt - 1] = st.reset_at ? TimestampTzGetDatum(*st.reset_at) : (Datum) 0;
	// The keys only for a model with the hottest-leads index: they are indexed (two more index entries
	// per change), and a row whose indexed columns stay the same can be updated in place (HOT).
	nulls[ColHotFit - 1] = nulls[ColHotKey - 1] = !model.hot_index;
	if (model.hot_index) {
		core::HotKeys hot = core::hot_keys(spec, st);
		values[ColHotFit - 1] = Float8GetDatum(hot.fit);
		values[ColHotKey - 1] = Float8GetDatum(core::hot_engagement_key_to_store(hot.engagement, hot_key));
	}
	values[ColStageAt - 1] = TimestampTzGetDatum(stage_at);
	nulls[ColStageSince - 1] = !st.stage_since.has_value();
	values[ColStageSince - 1] = st.stage_since ? TimestampTzGetDatum(*st.stage_since) : (Datum) 0;
	return heap_form_tuple(desc, values, nulls);
}

} // namespace leadscore::pg
