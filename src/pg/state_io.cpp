// Lead state rows: keys, rule evaluation on rows, reading, writing, rebuilding from events.
#include "state.h"
#include "predict.h"

extern "C" {
#include "mb/pg_wchar.h"
}

#include <cmath>
#include <cstring>

namespace leadscore::pg {

// Leads are read and written in chunks of this many: a statement or a recompute over millions of leads
// builds no array beyond PostgreSQL's 1 GB limit and holds no more than a chunk's rows at once.
static const int kChunk = 10000;

// ------------------------------------------------------------------------------------------------
// Leads and their keys

void leads_init(Leads *leads, const Cache *cache, const CachedModel *model, MemoryContext cxt)
{
	leads->cache = cache;
	leads->model = model;
	leads->cxt = cxt;
	leads->batch = ls_owned<Batch>(cxt);
	leads->size = 64;
	leads->n = 0;
	leads->keys = static_cast<Datum *>(MemoryContextAlloc(cxt, leads->size * sizeof(Datum)));
	leads->ctids = nullptr;
	leads->direct = nullptr;
}

int IntKeyIndex::find_or_add(int64_t key, int next)
{
	if (2 * (used_ + 1) > keys_.size()) {
		// Grow to keep the table at most half full, and re-insert.
		std::vector<int64_t> old_keys = std::move(keys_);
		std::vector<int> old_values = std::move(values_);
		size_t size = old_keys.empty() ? 64 : 2 * old_keys.size();
		keys_.assign(size, 0);
		values_.assign(size, -1);
		used_ = 0;
		for (size_t i = 0; i < old_keys.size(); i++)
			if (old_values[i] >= 0)
				find_or_add(old_keys[i], old_values[i]);
	}
	size_t mask = keys_.size() - 1;
	// A 64-bit mix (splitmix64's finaliser): consecutive ids spread over the table.
	uint64_t h = static_cast<uint64_t>(key);
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
	h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
	h ^= h >> 31;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		if (values_[i] < 0) {
			keys_[i] = key;
			values_[i] = next;
			used_++;
			return next;
		}
		if (keys_[i] == key)
			return values_[i];
	}
}

int lead_index(Leads *leads, Datum key)
{
	KeyKind kind = leads->model->key;
	int32 i4 = 0;
	int64 i8 = 0;
	const char *data;
	int len;

	switch (kind) {
	case KeyKind::Int4:
		i4 = DatumGetInt32(key);
		data = reinterpret_cast<const char *>(&i4);
		len = sizeof(i4);
		break;
	case KeyKind::Int8:
		i8 = DatumGetInt64(key);
		data = reinterpret_cast<const char *>(&i8);
		len = sizeof(i8);
		break;
	case KeyKind::Uuid:
		data = reinterpret_cast<const char *>(DatumGetUUIDP(key)->data);
		len = UUID_LEN;
		break;
	default: {
		text *t = DatumGetTextPP(key);
		data = VARDATA_ANY(t);
		len = VARSIZE_ANY_EXHDR(t);
		break;
	}
	}

	Batch *batch = leads->batch;
	const core::ModelSpec &spec = leads->model->spec;
	int index = -1;
	bool added = false;
	int next = leads->n;
	ls_cpp([&] {
		if (kind == KeyKind::Int4 || kind == KeyKind::Int8) {
			index = batch->int_ids.find_or_add(kind == KeyKind::Int4 ? i4 : i8, next);
			if (index != next)
				return;
		} else {
			// The scratch key keeps its buffer: a key seen before costs no allocation.
			batch->key.assign(data, len);
			auto seen = batch->ids.find(batch->key);
			if (seen != batch->ids.end()) {
				index = seen->second;
				return;
			}
			batch->ids.emplace(batch->key, next);
			index = next;
		}
		added = true;
		batch->states.emplace_back();
		batch->states.back().reset(spec);
		batch->rebuild.push_back(0);
		batch->old_stage.emplace_back();
		batch->next_change.emplace_back();
		batch->hot_key.emplace_back();
		batch->stage_at.emplace_back();
	});
	if (!added)
		return index;

	if (leads->n == leads->size) {
		leads->size *= 2;
		leads->keys = static_cast<Datum *>(repalloc(leads->keys, leads->size * sizeof(Datum)));
	}
	MemoryContext old = MemoryContextSwitchTo(leads->cxt);
	if (kind == KeyKind::Uuid)
		key = datumCopy(key, false, UUID_LEN);
	else if (kind == KeyKind::Text)
		key = PointerGetDatum(cstring_to_text_with_len(data, len));
	MemoryContextSwitchTo(old);
	leads->keys[leads->n++] = key;
	return index;
}

char *key_text(KeyKind kind, Datum key)
{
	Oid out;
	bool varlena;
	getTypeOutputInfo(key_type(kind).type, &out, &varlena);
	return OidOutputFunctionCall(out, key);
}

// ------------------------------------------------------------------------------------------------
// Rows of tracked tables

void evaluate_rules(const TrackedTable &table, const CachedModel &model, Batch *batch, TupleTableSlot *slot,
                    ExprContext *econtext)
{
	size_t n = table.is_lead ? model.spec.lead_rules.size() : model.spec.event_rules.size();
	ls_cpp([&] {
		if (table.is_lead)
			batch->fit.assign(n, 0.0);
		else
			batch->matched.assign(n, false);
	});
	econtext->ecxt_scantuple = slot;
	// Each condition runs with its author's rights alone, in a security-restricted operation: the identity
	// changes when the author does (most models have one), and is restored for predictions and at the end.
	RoleSwitch saved;
	GetUserIdAndSecContext(&saved.user, &saved.sec);
	Oid current = InvalidOid;
	for (const CompiledRule &rule : table.rules) {
		if (rule.author != current) {
			become_author(rule.author, &saved);
			current = rule.author;
		}
		bool isnull;
		Datum d = ExecEvalExprSwitchContext(rule.expr, econtext, &isnull);
		bool holds = !isnull && DatumGetBool(d);
		if (table.is_lead) {
			double value = holds ? 1.0 : 0.0;
			// A predictive rule: its points times the probability the trained model gives the lead row.
			if (holds && rule.predictor) {
				end_as_author(&saved);
				current = InvalidOid;
				bool should_free;
				HeapTuple tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
				value = predict_probability(rule.predictor, tuple, slot->tts_tupleDescriptor);
				if (should_free)
					heap_freetuple(tuple);
			}
			batch->fit[rule.index] = value;
		} else
			batch->matched[rule.index] = holds;
	}
	end_as_author(&saved);
	ResetExprContext(econtext);
}

bool event_time(const TrackedTable &table, TupleTableSlot *slot, std::optional<core::Micros> *at)
{
	*at = std::nullopt;
	if (table.time_attno == 0)
		return true;
	bool isnull;
	Datum d = slot_getattr(slot, table.time_attno, &isnull);
	if (isnull)
		return false;
	// timestamptz and timestamp share one representation; a timestamp is read as UTC.
	int64 t = DatumGetInt64(d);
	if (TIMESTAMP_NOT_FINITE(t))
		return false;
	*at = t;
	return true;
}

int row_lead(const TrackedTable &table, Leads *leads, TupleTableSlot *slot)
{
	bool isnull;
	Datum key = slot_getattr(slot, table.key_attno, &isnull);
	std::optional<core::Micros> at;
	if (isnull || (!table.is_lead && !event_time(table, slot, &at)))
		return -1;
	return lead_index(leads, key);
}

void apply_row(const TrackedTable &table, Leads *leads, int lead, TupleTableSlot *slot, ExprContext *econtext,
               int sign)
{
	Batch *batch = leads->batch;
	const core::ModelSpec &spec = leads->model->spec;
	std::optional<core::Micros> at;
	if (!table.is_lead)
		(void) event_time(table, slot, &at);
	evaluate_rules(table, *leads->model, batch, slot, econtext);
	ls_cpp([&] {
		core::LeadState &state = batch->states[lead];
		if (!table.is_lead) {
			if (core::apply_event(spec, state, at, batch->matched, sign))
				batch->rebuild[lead] = 1;
		} else if (sign > 0)
			core::set_lead(spec, state, batch->fit);
		else
			core::clear_lead(spec, state);
	});
}

// ------------------------------------------------------------------------------------------------
// Prepared statements on the state tables, per key kind; re-prepared if the extension was re-created.

// Columns of a state row; next_change came with version 1.1 (a 1.0 schema has the first eleven), reset_at,
// hot_fit and hot_key with 1.2, stage_at with 1.3.
enum StateCol { ColModel = 1, ColLead, ColHasLead, ColFit, ColEngN, ColEngW, ColEngFirst, ColEngRef, ColNEvents,
	            ColLastActivity, ColStage, ColNextChange, ColResetAt, ColHotFit, ColHotKey, ColStageAt,
	            kStateCols = ColStageAt };
static const char *const state_columns[kStateCols] = {
	"model_id", "lead", "has_lead", "fit", "eng_n", "eng_w", "eng_first", "eng_ref", "n_events",
	"last_activity", "stage", "next_change", "reset_at", "hot_fit", "hot_key", "stage_at"};

enum Stmt { Ensure, Read, Update, Insert, Delete, RecordChange, DueRows, DueRowsOf, SetStage, kStmts };

struct KindPlans {
	Oid state_relid;
	TupleDesc rowdesc;
	bool has_next_change;   // the state table has next_change (1.1)
	bool has_hot;           // ... and reset_at, hot_fit and hot_key (1.2)
	bool has_stage_at;      // ... and stage_at (1.3)
	Oid rowtype;            // the state table's row type, and the identifier of its descriptor when
	uint64 rowdesc_id;      // prepared: ALTER EXTENSION UPDATE adding a column makes the plans stale
	SPIPlanPtr plans[kStmts];
};
static KindPlans kind_plans[kKeyKinds];

static KindPlans *plans_for(KeyKind kind)
{
	const KeyType &kt = key_type(kind);
	KindPlans *p = &kind_plans[static_cast<int>(kind)];
	Oid relid = state_relid(kind);
	if (p->state_relid == relid && relid != InvalidOid &&
	    lookup_type_cache(p->rowtype, TYPECACHE_TUPDESC)->tupDesc_identifier == p->rowdesc_id)
		return p;

	for (SPIPlanPtr &plan : p->plans)
		if (plan) {
			SPI_freeplan(plan);
			plan = nullptr;
		}
	if (p->rowdesc)
		FreeTupleDesc(p->rowdesc);
	p->rowdesc = nullptr;
	p->state_relid = InvalidOid;

	Oid key_array = get_array_type(kt.type);
	Oid state_array = get_array_type(get_rel_type_id(relid));
	const char *s = kt.suffix;
	bool has_next = get_attnum(relid, "next_change") != InvalidAttrNumber;
	bool has_hot = get_attnum(relid, "hot_key") != InvalidAttrNumber;
	bool has_stage_at = get_attnum(relid, "stage_at") != InvalidAttrNumber;
	// The update of locked rows sets every column but the key, from rows of the table's own type.
	int natts = has_stage_at ? kStateCols : has_hot ? ColHotKey : has_next ? ColNextChange : ColStage;
	StringInfoData update;
	initStringInfo(&update);
	appendStringInfoString(&update, "UPDATE leadscore.state_%s s SET ");
	for (int c = ColHasLead; c <= natts; c++)
		appendStringInfo(&update, "%s%s = u.%s", c > ColHasLead ? ", " : "", state_columns[c - 1], state_columns[c - 1]);
	appendStringInfoString(&update, " FROM unnest($1, $2) AS u(t");
	for (int c = ColModel; c <= natts; c++)
		appendStringInfo(&update, ", %s", state_columns[c - 1]);
	appendStringInfoString(&update, ") WHERE s.ctid = u.t");
	// The scheduled run's update: the stage, its next change and (1.3) the instant the stage is of.
	const char *set_stage = psprintf("UPDATE leadscore.state_%%s s SET stage = u.stage, next_change = u.next%s "
	                                 "FROM unnest($1, $2, $3) AS u(t, stage, next) WHERE s.ctid = u.t",
	                                 has_stage_at ? ", stage_at = $4" : "");
	// A row created for a lead takes the lead's latest engagement reset (1.2): a lead reset while it had no
	// state row (nothing scored) must not count events dated before its reset when they come.
	char resets[NAMEDATALEN];
	snprintf(resets, sizeof(resets), "engagement_reset_%s", s);
	bool has_resets = has_hot && OidIsValid(get_relname_relid(resets, get_rel_namespace(relid)));
	struct {
		const char *sql;
		int nargs;
		Oid args[6];
	} defs[kStmts] = {
		// Creates missing rows and locks all, of every model the statement scores, in (lead, model) order:
		// statements that touch leads in increasing order cannot deadlock on them.
		{has_resets
		     ? "INSERT INTO leadscore.state_%1$s AS s (model_id, lead, reset_at) SELECT m, k, (SELECT max(r.reset_at) "
		       "FROM leadscore.engagement_reset_%1$s r WHERE r.model_id = m AND r.lead = k) FROM unnest($1, $2) AS u(m, k) "
		       "ORDER BY k, m ON CONFLICT (model_id, lead) DO UPDATE SET n_events = s.n_events WHERE false"
		     : "INSERT INTO leadscore.state_%s AS s (model_id, lead) SELECT m, k FROM unnest($1, $2) AS u(m, k) "
		       "ORDER BY k, m ON CONFLICT (model_id, lead) DO UPDATE SET n_events = s.n_events WHERE false",
		 2, {INT4ARRAYOID, key_array}},
		{"SELECT ctid, s FROM leadscore.state_%s s WHERE model_id = $1 AND lead = ANY($2)", 2, {INT4OID, key_array}},
		// Locked rows, found by their tuple ids (a TID scan per row, no index probe).
		{update.data, 2, {TIDARRAYOID, state_array}},
		{"INSERT INTO leadscore.state_%s SELECT * FROM unnest($1)", 1, {state_array}},
		{"DELETE FROM leadscore.state_%s WHERE model_id = $1 AND lead = ANY($2)", 2, {INT4OID, key_array}},
		{"INSERT INTO leadscore.stage_change_%s (model_id, lead, from_stage, to_stage, score, changed_at) "
		 "SELECT $1, l, f, t, s, a FROM unnest($2, $3, $4, $5, $6) AS u(l, f, t, s, a) RETURNING id",
		 6, {INT4OID, key_array, TEXTARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID, TIMESTAMPTZARRAYOID}},
		// Rows whose stage time may have changed by now (1.1): taken by one scheduled run, skipped by the others.
		// Each batch goes on from the last time the one before read ($3): the index entries of the rows a run
		// has moved on stay behind until a vacuum, and starting over at each batch would visit them all again.
		{"SELECT ctid, s FROM leadscore.state_%s s WHERE next_change <= $1 AND next_change >= $3 "
		 "ORDER BY next_change LIMIT 1000 FOR UPDATE SKIP LOCKED",
		 3, {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID}},
		{"SELECT ctid, s FROM leadscore.state_%s s WHERE next_change <= $1 AND next_change >= $3 AND model_id = $2 "
		 "ORDER BY next_change LIMIT 1000 FOR UPDATE SKIP LOCKED",
		 3, {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID}},
		{set_stage, has_stage_at ? 4 : 3, {TIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID}},
	};
	for (int i = 0; i < kStmts; i++) {
		if ((i == DueRows || i == DueRowsOf || i == SetStage) && !has_next)
			continue;
		char *sql = psprintf(defs[i].sql, s);
		// Generic plans: a custom plan per call would re-plan every statement (the array sizes differ).
		SPIPlanPtr plan = SPI_prepare_cursor(sql, defs[i].nargs, defs[i].args, CURSOR_OPT_GENERIC_PLAN);
		if (!plan)
			elog(ERROR, "leadscore: could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		p->plans[i] = plan;
	}
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	p->rowdesc = lookup_rowtype_tupdesc_copy(get_rel_type_id(relid), -1);
	MemoryContextSwitchTo(old);
	p->has_next_change = has_next;
	p->has_hot = has_hot;
	p->has_stage_at = has_stage_at;
	p->rowtype = get_rel_type_id(relid);
	p->rowdesc_id = lookup_type_cache(p->rowtype, TYPECACHE_TUPDESC)->tupDesc_identifier;
	p->state_relid = relid;
	return p;
}

static Datum key_array(Leads *leads, const int *which, int n)
{
	const KeyType &kt = key_type(leads->model->key);
	int16 typlen;
	bool byval;
	char align;
	get_typlenbyvalalign(kt.type, &typlen, &byval, &align);
	Datum *elems = static_cast<Datum *>(palloc(sizeof(Datum) * (n > 0 ? n : 1)));
	for (int i = 0; i < n; i++)
		elems[i] = leads->keys[which ? which[i] : i];
	return PointerGetDatum(construct_array(elems, n, kt.type, typlen, byval, align));
}

// ------------------------------------------------------------------------------------------------
// State rows <-> LeadState


static void deconstruct(Datum array, Oid elemtype, Datum **elems, bool **nulls, int *n)
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

char *scan_source(const TrackedTable &table)
{
	bool partitioned = get_rel_relkind(table.relid) == RELKIND_PARTITIONED_TABLE;
	return psprintf("%s%s", partitioned ? "" : "ONLY ", table.name.c_str());
}

// Whether a state row (a composite value) has the shape of its model's rules: not so while a
// configuration change is under way (the rules of an untracked table deleted, the recompute to come).
static bool state_fits(const core::ModelSpec &spec, HeapTupleHeader row)
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
static const CachedModel *state_from_tuple(const Cache *cache, HeapTuple tuple, TupleDesc desc,
                                           core::LeadState *state, Datum *key, RowExtras *extras = nullptr)
{
	Datum values[kStateCols];
	bool nulls[kStateCols];
	if (desc->natts != kStateCols && desc->natts != ColHotKey && desc->natts != ColNextChange && desc->natts != ColStage)
		ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH), errmsg("leadscore: not a state row")));
	// A row built by a caller (_eval takes any record) must have the columns' types, the key's that of its
	// model: a Datum is never read as another type.
	static const Oid types[kStateCols] = {INT4OID, InvalidOid, BOOLOID, FLOAT8ARRAYOID, INT8ARRAYOID,
	                                      FLOAT8ARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID, INT8OID,
	                                      TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, FLOAT8OID,
	                                      FLOAT8OID, TIMESTAMPTZOID};
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
		extras->stage_at = nulls[ColStageAt - 1]
		                       ? std::nullopt
		                       : std::optional<core::Micros>(DatumGetInt64(values[ColStageAt - 1]));
	}
	bool has_reset = !nulls[ColResetAt - 1];
	int64 reset_at = has_reset ? DatumGetInt64(values[ColResetAt - 1]) : 0;

	const CachedModel *model = cache->model_by_id(DatumGetInt32(values[ColModel - 1]));
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
		state->reset_at = has_reset ? std::optional<core::Micros>(reset_at) : std::nullopt;
		bool fresh = !fit && !eng_n; // a row just created by the Ensure statement
		if (fresh)
			return;
		if ((size_t) n_fit != spec.lead_rules.size() || (size_t) n_n != spec.event_rules.size() || n_w != n_n ||
		    n_first != n_n)
			throw core::Error("XX000", "leadscore: state of model \"" + spec.name +
			                               "\" does not match its rules; run leadscore.recompute");
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

static Datum make_array(Datum *elems, bool *nulls, int n, Oid elemtype)
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

// hot_key: the engagement key as stored before (kept while it still bounds closely enough, see core/hot.h).
static HeapTuple state_to_tuple(KindPlans *plans, const CachedModel &model, Datum key, const core::LeadState &st,
                                std::optional<core::Micros> next_change, std::optional<double> hot_key,
                                TimestampTz stage_at)
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
	values[ColModel - 1] = Int32GetDatum(spec.id);
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
	return heap_form_tuple(plans->rowdesc, values, nulls);
}

// ------------------------------------------------------------------------------------------------
// Reading and writing

// Takes a state read (in batch->scratch, of lead key, found at ctid) as the state of its lead.
static void take_state(Leads *leads, Datum key, ItemPointer ctid, bool *found, const RowExtras &extras)
{
	Batch *batch = leads->batch;
	int lead = lead_index(leads, key);
	leads->ctids[lead] = *ctid;
	found[lead] = true;
	ls_cpp([&] {
		batch->old_stage[lead] = batch->scratch.stage;
		batch->next_change[lead] = extras.next_change;
		batch->hot_key[lead] = extras.hot_key;
		batch->stage_at[lead] = extras.stage_at;
		std::swap(batch->states[lead], batch->scratch);
	});
}

// Reads the rows a statement returned (ctid, state) into the leads' states.
static void take_states(Leads *leads, bool *found)
{
	SPITupleTable *rows = SPI_tuptable;
	uint64 n = SPI_processed;
	for (uint64 r = 0; r < n; r++) {
		bool isnull;
		ItemPointer ctid = (ItemPointer) DatumGetPointer(SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull));
		Datum row = SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull);
		Datum key;
		RowExtras extras;
		state_from_row(leads->cache, DatumGetHeapTupleHeader(row), &leads->batch->scratch, &key, &extras);
		take_state(leads, key, ctid, found, extras);
	}
}

void lock_states(Leads **all, int n_all)
{
	for (int kind = 0; kind < kKeyKinds; kind++) {
		int n = 0;
		for (int i = 0; i < n_all; i++)
			if (static_cast<int>(all[i]->model->key) == kind)
				n += all[i]->n;
		if (n == 0)
			continue;
		KeyKind key = static_cast<KeyKind>(kind);
		const KeyType &kt = key_type(key);
		int16 typlen;
		bool byval;
		char align;
		get_typlenbyvalalign(kt.type, &typlen, &byval, &align);
		Datum *models = static_cast<Datum *>(palloc(sizeof(Datum) * n));
		Datum *keys = static_cast<Datum *>(palloc(sizeof(Datum) * n));
		int k = 0;
		for (int i = 0; i < n_all; i++)
			if (all[i]->model->key == key)
				for (int j = 0; j < all[i]->n; j++) {
					models[k] = Int32GetDatum(all[i]->model->spec.id);
					keys[k++] = all[i]->keys[j];
				}
		Datum args[2] = {PointerGetDatum(construct_array(models, n, INT4OID, 4, true, TYPALIGN_INT)),
		                 PointerGetDatum(construct_array(keys, n, kt.type, typlen, byval, align))};
		if (SPI_execute_plan(plans_for(key)->plans[Ensure], args, nullptr, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "leadscore: could not lock lead states");
	}
}

// One state row to lock: a lead of one of the batches, in the order Ensure locks them.
struct LockItem {
	Datum key;
	int32 model_id;
	int all, lead;
};

static int compare_lock_items(const void *a, const void *b, void *arg)
{
	const LockItem *x = static_cast<const LockItem *>(a), *y = static_cast<const LockItem *>(b);
	int c = 0;
	switch (*static_cast<KeyKind *>(arg)) {
	case KeyKind::Int4:
		c = (DatumGetInt32(x->key) > DatumGetInt32(y->key)) - (DatumGetInt32(x->key) < DatumGetInt32(y->key));
		break;
	case KeyKind::Int8:
		c = (DatumGetInt64(x->key) > DatumGetInt64(y->key)) - (DatumGetInt64(x->key) < DatumGetInt64(y->key));
		break;
	default: // uuid: its btree order is the order of its bytes
		c = memcmp(DatumGetUUIDP(x->key)->data, DatumGetUUIDP(y->key)->data, UUID_LEN);
		break;
	}
	return c != 0 ? c : (x->model_id > y->model_id) - (x->model_id < y->model_id);
}

bool lock_read_direct(Leads **all, int n_all)
{
	KeyKind kind = all[0]->model->key;
	int n = 0;
	if (!direct_state_access)
		return false;
	for (int i = 0; i < n_all; i++) {
		// Text keys sort by their collation: they keep the statement path, whose ORDER BY is the same.
		if (all[i]->model->key != kind || kind == KeyKind::Text)
			return false;
		n += all[i]->n;
	}
	LockItem *items = static_cast<LockItem *>(palloc(sizeof(LockItem) * (n + 1)));
	int k = 0;
	for (int i = 0; i < n_all; i++) {
		Leads *leads = all[i];
		leads->ctids = static_cast<ItemPointerData *>(palloc0(sizeof(ItemPointerData) * (leads->n + 1)));
		if (!leads->direct)
			leads->direct = state_table_open(kind);
		for (int j = 0; j < leads->n; j++)
			items[k++] = LockItem{leads->keys[j], leads->model->spec.id, i, j};
	}
	qsort_arg(items, n, sizeof(LockItem), compare_lock_items, &kind);
	bool *found = static_cast<bool *>(palloc0(sizeof(bool) * (n + 1)));
	for (int i = 0; i < n; i++) {
		Leads *leads = all[items[i].all];
		ItemPointerData ctid;
		HeapTuple row;
		// A missing row ends the direct path; the locks taken so far are a prefix of Ensure's order, so
		// that Ensure may go on from there without risk of deadlock.
		if (!state_row_lock(leads->direct, items[i].model_id, items[i].key, &ctid, &row))
			return false;
		Datum key;
		RowExtras extras;
		state_from_tuple(leads->cache, row, state_table_desc(leads->direct), &leads->batch->scratch, &key, &extras);
		take_state(leads, key, &ctid, found, extras);
	}
	return true;
}

void read_states(Leads *leads, ReadMode mode)
{
	if (leads->n == 0)
		return;
	KindPlans *plans = plans_for(leads->model->key);
	Datum id = Int32GetDatum(leads->model->spec.id);
	bool *found = static_cast<bool *>(palloc0(sizeof(bool) * leads->n));
	leads->ctids = static_cast<ItemPointerData *>(palloc0(sizeof(ItemPointerData) * leads->n));

	if (mode == ReadMode::LockOne && !direct_state_access) {
		lock_states(&leads, 1);
		mode = ReadMode::Locked;
	}
	if (mode == ReadMode::LockOne) {
		// Through the primary key, without the executor (direct.cpp); the row is updated the same way.
		leads->direct = state_table_open(leads->model->key);
		ItemPointerData ctid;
		HeapTuple row;
		if (state_row_lock(leads->direct, leads->model->spec.id, leads->keys[0], &ctid, &row)) {
			Datum key;
			RowExtras extras;
			state_from_tuple(leads->cache, row, state_table_desc(leads->direct), &leads->batch->scratch, &key, &extras);
			take_state(leads, key, &ctid, found, extras);
			return;
		}
		lock_states(&leads, 1);
		mode = ReadMode::Locked;
	}
	// Locked rows are read with a fresh snapshot: the latest committed version, the one we locked.
	// In chunks, so that millions of leads never make one result set.
	int *which = static_cast<int *>(palloc(sizeof(int) * kChunk));
	for (int lo = 0; lo < leads->n; lo += kChunk) {
		int n = Min(leads->n, lo + kChunk) - lo;
		for (int i = 0; i < n; i++)
			which[i] = lo + i;
		Datum args[2] = {id, key_array(leads, which, n)};
		if (SPI_execute_plan(plans->plans[Read], args, nullptr, mode == ReadMode::Unlocked, 0) != SPI_OK_SELECT)
			elog(ERROR, "leadscore: could not read lead states");
		take_states(leads, found);
		SPI_freetuptable(SPI_tuptable);
	}
}

// A stage change as a JSON payload on channel leadscore_stage: model, lead, from, to, score, at and the id of
// its row in stage_changes. NOTIFY refuses a payload of 8,000 bytes or more, which would fail the CRM's own
// write: then model, lead and stage names are each cut to their first kCutBytes bytes (at a character
// boundary) and the payload says "cut": true; the id still names the whole row.
static const int kCutBytes = 300;
static const int kNotifyPayloadMax = BLCKSZ - NAMEDATALEN - 128; // NOTIFY_PAYLOAD_MAX_LENGTH (async.c)

static void append_field(StringInfo buf, const char *key, const char *value, bool cut)
{
	appendStringInfo(buf, "%s\"%s\": ", buf->len > 1 ? ", " : "", key);
	if (!value) {
		appendStringInfoString(buf, "null");
		return;
	}
	int len = (int) strlen(value);
	if (cut && len > kCutBytes)
		value = pnstrdup(value, pg_mbcliplen(value, len, kCutBytes));
	escape_json(buf, value);
}

static void notify_change(const char *model, const char *lead, const char *from, const char *to, double score,
                          TimestampTz at, int64 id)
{
	StringInfoData buf;
	initStringInfo(&buf);
	for (bool cut : {false, true}) {
		resetStringInfo(&buf);
		appendStringInfoChar(&buf, '{');
		append_field(&buf, "model", model, cut);
		append_field(&buf, "lead", lead, cut);
		append_field(&buf, "from", from, cut);
		append_field(&buf, "to", to, cut);
		appendStringInfo(&buf, ", \"score\": %.15g, \"at\": ", std::isfinite(score) ? score : 0.0);
		escape_json(&buf, timestamptz_to_str(at));
		appendStringInfo(&buf, ", \"id\": " INT64_FORMAT "%s}", id, cut ? ", \"cut\": true" : "");
		if (buf.len < kNotifyPayloadMax)
			break;
	}
	Async_Notify("leadscore_stage", buf.data);
}

// Records stage changes (leads' indexes into leads, with their stages, scores and instants) in the model's
// history table and notifies each, with the id of its row. Counts them into *count if given.
static void record_changes(Leads *leads, const int *lead, Datum *from, bool *from_nulls, Datum *to, bool *to_nulls,
                           Datum *scores, Datum *times, int n, int64 *count)
{
	const CachedModel *model = leads->model;
	KindPlans *plans = plans_for(model->key);
	Datum args[6] = {Int32GetDatum(model->spec.id), key_array(leads, lead, n),
	                 make_array(from, from_nulls, n, TEXTOID), make_array(to, to_nulls, n, TEXTOID),
	                 make_array(scores, nullptr, n, FLOAT8OID), make_array(times, nullptr, n, TIMESTAMPTZOID)};
	if (SPI_execute_plan(plans->plans[RecordChange], args, nullptr, false, 0) != SPI_OK_INSERT_RETURNING ||
	    SPI_processed != (uint64) n)
		elog(ERROR, "leadscore: could not record stage changes");
	SPITupleTable *ids = SPI_tuptable;
	for (int c = 0; c < n; c++) {
		bool isnull;
		int64 id = DatumGetInt64(SPI_getbinval(ids->vals[c], ids->tupdesc, 1, &isnull));
		notify_change(model->spec.name.c_str(), key_text(model->key, leads->keys[lead[c]]),
		              from_nulls[c] ? nullptr : TextDatumGetCString(from[c]),
		              to_nulls[c] ? nullptr : TextDatumGetCString(to[c]), DatumGetFloat8(scores[c]),
		              DatumGetTimestampTz(times[c]), id);
	}
	SPI_freetuptable(ids);
	if (count)
		*count += n;
}

// Writes the leads lo..hi-1 (see write_states).
static void write_chunk(Leads *leads, int lo, int hi, TimestampTz now, bool insert)
{
	const CachedModel *model = leads->model;
	const core::ModelSpec &spec = model->spec;
	KindPlans *plans = plans_for(model->key);
	Batch *batch = leads->batch;
	int n = hi - lo;

	Datum *rows = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	HeapTuple *tuples = static_cast<HeapTuple *>(palloc(sizeof(HeapTuple) * n));
	int *gone = static_cast<int *>(palloc(sizeof(int) * n));
	int *changed = static_cast<int *>(palloc(sizeof(int) * n));
	Datum *from = static_cast<Datum *>(palloc(sizeof(Datum) * n)), *to = static_cast<Datum *>(palloc(sizeof(Datum) * n)),
	      *scores = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	bool *from_nulls = static_cast<bool *>(palloc(sizeof(bool) * n)), *to_nulls = static_cast<bool *>(palloc(sizeof(bool) * n));
	int n_rows = 0, n_gone = 0, n_changed = 0;
	int *row_lead = static_cast<int *>(palloc(sizeof(int) * n));

	for (int i = lo; i < hi; i++) {
		core::LeadState *state = &batch->states[i];
		if (state->empty()) {
			gone[n_gone++] = i;
			continue;
		}
		// The stage now; a lead with events dated later than now is scored from its events up to now.
		const core::LeadState *at_now = state;
		std::optional<core::Micros> next_event;
		if (!core::valid_at(*state, now)) {
			ls_cpp([&] { batch->scratch = *state; });
			rebuild_events(leads->cache, *model, batch, leads->keys[i], now, &batch->scratch, nullptr, &next_event);
			at_now = &batch->scratch;
		}
		double score = 0;
		bool stage_changed = false;
		bool timed = plans->has_next_change && !spec.stages.empty();
		ls_cpp([&] {
			core::ScoreResult result = core::evaluate(spec, *at_now, now);
			score = result.score;
			stage_changed = result.stage != batch->old_stage[i];
			state->stage = result.stage;
			if (!timed)
				return;
			// When time alone may next change the stage (or a lead's future-dated event arrive): the scheduled
			// run (leadscore.advance_stages) wakes the lead then. A stored time still at or before it stays,
			// so that the indexed column does not change and the update can remain HOT.
			// A cheap lower bound is enough here (the run computes the exact instants when it wakes the lead).
			std::optional<core::Micros> next = core::stage_change_lower_bound(spec, *at_now, now, result.score);
			if (next_event && (!next || *next_event < *next))
				next = next_event;
			const std::optional<core::Micros> &stored = batch->next_change[i];
			if (!insert && stored && *stored > now && (!next || *stored <= *next))
				next = stored;
			batch->next_change[i] = next;
		});
		if (stage_changed) {
			const std::optional<std::string> &old_stage = batch->old_stage[i];
			from_nulls[n_changed] = !old_stage.has_value();
			from[n_changed] = old_stage ? CStringGetTextDatum(old_stage->c_str()) : (Datum) 0;
			to_nulls[n_changed] = !state->stage.has_value();
			to[n_changed] = state->stage ? CStringGetTextDatum(state->stage->c_str()) : (Datum) 0;
			scores[n_changed] = Float8GetDatum(score);
			changed[n_changed++] = i;
		}
		row_lead[n_rows] = i;
		tuples[n_rows] = state_to_tuple(plans, *model, leads->keys[i], *state, batch->next_change[i], batch->hot_key[i], now);
		rows[n_rows] = HeapTupleGetDatum(tuples[n_rows]);
		n_rows++;
	}

	if (n_rows > 0 && !insert && leads->direct) {
		for (int r = 0; r < n_rows; r++)
			state_row_update(leads->direct, &leads->ctids[row_lead[r]], tuples[r]);
		// What this statement wrote, later statements of the transaction must see.
		CommandCounterIncrement();
	} else if (n_rows > 0 && insert) {
		Datum arg = make_array(rows, nullptr, n_rows, get_rel_type_id(plans->state_relid));
		if (SPI_execute_plan(plans->plans[Insert], &arg, nullptr, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "leadscore: could not write lead states");
	} else if (n_rows > 0) {
		Datum *tids = static_cast<Datum *>(palloc(sizeof(Datum) * n_rows));
		for (int r = 0; r < n_rows; r++)
			tids[r] = PointerGetDatum(&leads->ctids[row_lead[r]]);
		Datum args[2] = {make_array(tids, nullptr, n_rows, TIDOID),
		                 make_array(rows, nullptr, n_rows, get_rel_type_id(plans->state_relid))};
		if (SPI_execute_plan(plans->plans[Update], args, nullptr, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "leadscore: could not write lead states");
	}
	if (n_gone > 0 && !insert) {
		Datum args[2] = {Int32GetDatum(spec.id), key_array(leads, gone, n_gone)};
		if (SPI_execute_plan(plans->plans[Delete], args, nullptr, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "leadscore: could not delete lead states");
	}
	if (n_changed > 0) {
		Datum *times = static_cast<Datum *>(palloc(sizeof(Datum) * n_changed));
		for (int c = 0; c < n_changed; c++)
			times[c] = TimestampTzGetDatum(now);
		record_changes(leads, changed, from, from_nulls, to, to_nulls, scores, times, n_changed, nullptr);
	}
}

// Each chunk is written in a memory context of its own, reset after it.

void write_states(Leads *leads, TimestampTz now, bool insert)
{
	// Locked rows are updated in place through their tuple ids (direct.cpp), one by one: cheaper than an
	// UPDATE statement fed with arrays of rows.
	if (!insert && leads->ctids && !leads->direct && leads->n > 0 && direct_state_access)
		leads->direct = state_table_open(leads->model->key);
	MemoryContext chunk_cxt = AllocSetContextCreate(CurrentMemoryContext, "leadscore write", ALLOCSET_DEFAULT_SIZES);
	for (int lo = 0; lo < leads->n; lo += kChunk) {
		MemoryContext old = MemoryContextSwitchTo(chunk_cxt);
		write_chunk(leads, lo, Min(leads->n, lo + kChunk), now, insert);
		MemoryContextSwitchTo(old);
		MemoryContextReset(chunk_cxt);
	}
	MemoryContextDelete(chunk_cxt);
	if (leads->direct) {
		state_table_close(leads->direct);
		leads->direct = nullptr;
	}
}

// ------------------------------------------------------------------------------------------------
// Rebuilding a lead's engagement from its events

static SPIPlanPtr event_scan_plan(const TrackedTable &table)
{
	if (table.scan_plan)
		return table.scan_plan;
	char *sql = psprintf("SELECT t FROM %s t WHERE %s = $1", scan_source(table), quote_identifier(table.key_column.c_str()));
	Oid argtype = get_atttype(table.relid, table.key_attno);
	SPIPlanPtr plan = SPI_prepare_cursor(sql, 1, &argtype, CURSOR_OPT_GENERIC_PLAN);
	if (!plan)
		elog(ERROR, "leadscore: could not prepare \"%s\"", sql);
	SPI_keepplan(plan);
	table.scan_plan = plan;
	return plan;
}

static bool rebuild_events_read(const Cache *cache, const CachedModel &model, Batch *batch, Datum key,
                                std::optional<core::Micros> as_of, core::LeadState *state, const TrackedTable *only,
                                std::optional<core::Micros> *next_after);

// A partial rebuild keeps the other tables' weights, relative to the state's reference time (its latest
// event). When the latest event goes back by more than this many half-lives (a mistyped far date
// corrected, such an event deleted), those weights were shrunk below what a double keeps and would be
// scaled back up by 2^this or more (0 x infinity: NaN): the whole lead is rebuilt instead.
static const double kFarHalfLives = 500;

// The events are read as the extension's owner, names in pg_catalog alone: a lead's score at any instant is
// the same for every reader (row-level security on an event table does not hide some of them from one
// reader). The readers check first that the caller may see the lead. An error restores both.
void rebuild_events(const Cache *cache, const CachedModel &model, Batch *batch, Datum key,
                    std::optional<core::Micros> as_of, core::LeadState *state, const TrackedTable *only,
                    std::optional<core::Micros> *next_after)
{
	RoleSwitch saved;
	as_role(cache->owner, &saved);
	if (rebuild_events_read(cache, model, batch, key, as_of, state, only, next_after)) {
		// A whole rebuild reads every event table of the lead, this statement's changes included: those of
		// another table whose triggers have yet to run would then count twice.
		for (int t : model.tables) {
			const TrackedTable &other = cache->tables[t];
			if (&other != only && !other.is_lead && AfterTriggerPendingOnRel(other.relid))
				ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				                errmsg("model \"%s\": lead %s's latest event moved back by more than %g half-lives in a "
				                       "statement that also changes table %s", model.spec.name.c_str(),
				                       key_text(model.key, key), kFarHalfLives, other.name.c_str()),
				                errhint("Change the two tables in separate statements.")));
		}
		(void) rebuild_events_read(cache, model, batch, key, as_of, state, nullptr, next_after);
	}
	end_as_role(&saved);
}

// True (and the state left to a whole rebuild) when a partial rebuild would lose precision.
static bool rebuild_events_read(const Cache *cache, const CachedModel &model, Batch *batch, Datum key,
                                std::optional<core::Micros> as_of, core::LeadState *state, const TrackedTable *only,
                                std::optional<core::Micros> *next_after)
{
	if (next_after)
		*next_after = std::nullopt;
	const core::ModelSpec &spec = model.spec;
	int64 n_events = state->n_events;
	// At another time than the state's, another reset may apply.
	bool at_time = as_of && !only;
	std::optional<core::Micros> reset = at_time ? reset_in_force(model, key, as_of) : std::nullopt;
	ls_cpp([&] {
		batch->caps.start(spec);
		if (at_time)
			state->reset_at = reset;
		if (only) {
			for (const CompiledRule &rule : only->rules) {
				state->n[rule.index] = 0;
				state->w[rule.index] = 0;
				state->first[rule.index].reset();
			}
			return;
		}
		std::vector<double> fit = state->fit;
		bool has_lead = state->has_lead;
		std::optional<std::string> stage = state->stage;
		state->reset(spec);
		state->fit = std::move(fit);
		state->has_lead = has_lead;
		state->stage = std::move(stage);
	});
	bool any_time = false;
	int64 latest = 0;
	ExprContext *econtext = CreateStandaloneExprContext();
	for (int t : model.tables) {
		const TrackedTable &table = cache->tables[t];
		if (table.is_lead)
			continue;
		// A partial rebuild re-reads the rules of one table; of the others, only the latest time is
		// needed. Their rows may include changes of this very statement whose triggers have yet to run:
		// adding those twice would be wrong, taking them into a maximum is not.
		bool rules_too = !only || only == &table;
		SPIPlanPtr plan = event_scan_plan(table);
		if (SPI_execute_plan(plan, &key, nullptr, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "leadscore: could not read the events of a lead from %s", table.name.c_str());
		Relation rel = table_open(table.relid, AccessShareLock);
		TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
		SPITupleTable *rows = SPI_tuptable;
		for (uint64 r = 0; r < SPI_processed; r++) {
			bool isnull;
			HeapTupleHeader row = DatumGetHeapTupleHeader(SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull));
			HeapTupleData tuple;
			row_tuple(row, table.relid, &tuple);
			ExecStoreHeapTuple(&tuple, slot, false);
			std::optional<core::Micros> at;
			if (!event_time(table, slot, &at))
				continue;
			if (as_of && at && *at > *as_of) {
				if (next_after && (!*next_after || *at < **next_after))
					*next_after = at;
				continue;
			}
			if (at && (!any_time || *at > latest)) {
				latest = *at;
				any_time = true;
			}
			if (!rules_too)
				continue;
			evaluate_rules(table, model, batch, slot, econtext);
			ls_cpp([&] {
				core::apply_event(spec, *state, at, batch->matched, 1);
				batch->caps.add(spec, at, batch->matched);
			});
		}
		ExecDropSingleTupleTableSlot(slot);
		table_close(rel, AccessShareLock);
		SPI_freetuptable(rows);
	}
	FreeExprContext(econtext, true);
	if (only && spec.decays_per_event() && state->ref && any_time && latest < *state->ref &&
	    (double) (*state->ref - latest) / *spec.half_life > kFarHalfLives)
		return true;
	if (only)
		ls_cpp([&] {
			// The count of events is exact by deltas; the latest activity is the maximum just read.
			state->n_events = n_events;
			state->last_activity = any_time ? std::optional<core::Micros>(latest) : std::nullopt;
			if (any_time)
				core::rebase(spec, *state, latest);
		});
	// Rules capped per period, relative to the final ref: of the one table, or all.
	ls_cpp([&] {
		if (!batch->caps.any())
			return;
		std::vector<bool> mask;
		if (only) {
			mask.assign(spec.event_rules.size(), false);
			for (const CompiledRule &rule : only->rules)
				mask[rule.index] = true;
		}
		batch->caps.finish(spec, *state, only ? &mask : nullptr);
	});
	return false;
}

// ------------------------------------------------------------------------------------------------
// Stage changes caused by time alone

// Appends to batch->timed the stage changes of lead i in (from, to] without row changes, the stage at
// `from` being batch->old_stage[i]; leaves the stage at `to` there and in batch->next_change[i] when it
// may next change. A lead with events dated after `from` is rebuilt at each of them: an event's arrival
// at its own time is a change of its own.
static void advance_lead(Leads *leads, int i, core::Micros from, core::Micros to)
{
	const CachedModel &model = *leads->model;
	const core::ModelSpec &spec = model.spec;
	Batch *batch = leads->batch;
	core::Micros t = from;
	bool at_event = false;
	for (;;) {
		const core::LeadState *at_t = &batch->states[i];
		std::optional<core::Micros> next_event;
		if (!core::valid_at(*at_t, t)) {
			ls_cpp([&] { batch->scratch = batch->states[i]; });
			rebuild_events(leads->cache, model, batch, leads->keys[i], t, &batch->scratch, nullptr, &next_event);
			at_t = &batch->scratch;
		}
		bool last = !next_event || *next_event > to;
		core::Micros until = last ? to : *next_event - 1;
		ls_cpp([&] {
			std::optional<std::string> &stage = batch->old_stage[i];
			if (at_event) {
				core::ScoreResult r = core::evaluate(spec, *at_t, t);
				if (r.stage != stage) {
					batch->timed.push_back(core::StageChange{t, stage, r.stage, r.score});
					batch->timed_lead.push_back(i);
					stage = r.stage;
				}
			}
			for (core::StageChange &c : core::stage_changes(spec, *at_t, t, until)) {
				c.from = stage;
				stage = c.to;
				batch->timed.push_back(std::move(c));
				batch->timed_lead.push_back(i);
			}
			if (last) {
				std::optional<core::Micros> next = core::next_stage_change(spec, *at_t, to);
				if (next_event && (!next || *next_event < *next))
					next = next_event;
				batch->next_change[i] = next;
			}
		});
		if (last)
			return;
		t = *next_event;
		at_event = true;
	}
}

// Records and notifies the changes in batch->timed, each at its own instant; empties the list.
static void record_timed(Leads *leads, int64 *count)
{
	Batch *batch = leads->batch;
	int n = (int) batch->timed.size();
	if (n == 0)
		return;
	int *lead = static_cast<int *>(palloc(sizeof(int) * n));
	Datum *from = static_cast<Datum *>(palloc(sizeof(Datum) * n)), *to = static_cast<Datum *>(palloc(sizeof(Datum) * n)),
	      *scores = static_cast<Datum *>(palloc(sizeof(Datum) * n)), *times = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	bool *from_nulls = static_cast<bool *>(palloc(sizeof(bool) * n)), *to_nulls = static_cast<bool *>(palloc(sizeof(bool) * n));
	for (int c = 0; c < n; c++) {
		const core::StageChange &change = batch->timed[c];
		lead[c] = batch->timed_lead[c];
		from_nulls[c] = !change.from.has_value();
		from[c] = change.from ? CStringGetTextDatum(change.from->c_str()) : (Datum) 0;
		to_nulls[c] = !change.to.has_value();
		to[c] = change.to ? CStringGetTextDatum(change.to->c_str()) : (Datum) 0;
		scores[c] = Float8GetDatum(change.score);
		times[c] = TimestampTzGetDatum(change.at);
	}
	record_changes(leads, lead, from, from_nulls, to, to_nulls, scores, times, n, count);
	ls_cpp([&] {
		batch->timed.clear();
		batch->timed_lead.clear();
	});
}

TimestampTz statement_instant(const Leads *leads, TimestampTz now)
{
	const Batch *batch = leads->batch;
	for (int i = 0; i < leads->n; i++)
		if (batch->stage_at[i] && *batch->stage_at[i] > now)
			now = *batch->stage_at[i];
	return now;
}

void catch_up(Leads *leads, TimestampTz now)
{
	if (leads->model->spec.stages.empty())
		return;
	Batch *batch = leads->batch;
	for (int i = 0; i < leads->n; i++) {
		std::optional<core::Micros> next = batch->next_change[i];
		if (next && *next <= now)
			advance_lead(leads, i, *next - 1, now);
	}
	record_timed(leads, nullptr);
}

int64 advance_stages(TimestampTz as_of, std::optional<int> only_model)
{
	const Cache *cache = get_cache();
	if (only_model) {
		// One model, under the configuration the caller holds (before it changes it): exclusively.
		lock_model(*only_model, true);
	} else {
		// Shared model locks, in model order as the triggers take them: a configuration change
		// (exclusive) waits for the run, and the run for it.
		for (const CachedModel &m : cache->models)
			lock_model(m.spec.id, false);
		AcceptInvalidationMessages();
		if (get_cache() != cache) {
			cache = get_cache();
			for (const CachedModel &m : cache->models)
				lock_model(m.spec.id, false);
		}
	}

	int64 count = 0;
	int n_models = (int) cache->models.size();
	MemoryContext chunk_cxt = AllocSetContextCreate(CurrentMemoryContext, "leadscore advance", ALLOCSET_DEFAULT_SIZES);
	for (int kind = 0; kind < kKeyKinds; kind++) {
		if (!OidIsValid(state_relid(static_cast<KeyKind>(kind))))
			continue;
		KindPlans *plans = plans_for(static_cast<KeyKind>(kind));
		if (!plans->has_next_change)
			continue;
		TimestampTz from = DT_NOBEGIN; // the time the next batch starts from
		for (;;) {
			MemoryContext old = MemoryContextSwitchTo(chunk_cxt);
			Datum args_due[3] = {TimestampTzGetDatum(as_of), Int32GetDatum(only_model.value_or(0)),
			                     TimestampTzGetDatum(from)};
			if (SPI_execute_plan(plans->plans[only_model ? DueRowsOf : DueRows], args_due, nullptr, false, 0) !=
			    SPI_OK_SELECT)
				elog(ERROR, "leadscore: could not read the lead states due");
			uint64 n = SPI_processed;
			SPITupleTable *rows = SPI_tuptable;
			if (n == 0) {
				MemoryContextSwitchTo(old);
				MemoryContextReset(chunk_cxt);
				break;
			}
			// The rows, by model.
			Leads **by_model = static_cast<Leads **>(palloc0(sizeof(Leads *) * (n_models + 1)));
			bool **found = static_cast<bool **>(palloc0(sizeof(bool *) * (n_models + 1)));
			int *row_model = static_cast<int *>(palloc(sizeof(int) * n)), *row_lead = static_cast<int *>(palloc(sizeof(int) * n));
			Datum *tids = static_cast<Datum *>(palloc(sizeof(Datum) * n));
			for (uint64 r = 0; r < n; r++) {
				bool isnull;
				tids[r] = SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull);
				HeapTupleHeader row = DatumGetHeapTupleHeader(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull));
				int model_id = DatumGetInt32(GetAttributeByNum(row, ColModel, &isnull));
				Datum due = GetAttributeByNum(row, ColNextChange, &isnull);
				if (!isnull)
					from = Max(from, DatumGetTimestampTz(due));
				int m = 0;
				while (m < n_models && cache->models[m].spec.id != model_id)
					m++;
				row_model[r] = m;
				row_lead[r] = -1;
				if (m == n_models)
					continue; // a model that is gone: its rows go with it
				// A state that no longer fits its model's rules (a configuration change under way, e.g. a
				// tracked table dropped with the rules that read it) cannot be moved on under them: it is
				// left to the recompute that follows, and taken off the schedule meanwhile.
				if (!state_fits(cache->models[m].spec, row))
					continue;
				if (!by_model[m]) {
					by_model[m] = static_cast<Leads *>(palloc(sizeof(Leads)));
					leads_init(by_model[m], cache, &cache->models[m], chunk_cxt);
					by_model[m]->ctids = static_cast<ItemPointerData *>(palloc0(sizeof(ItemPointerData) * (n + 1)));
					found[m] = static_cast<bool *>(palloc0(sizeof(bool) * (n + 1)));
				}
				Leads *leads = by_model[m];
				Datum key;
				RowExtras extras;
				state_from_row(cache, row, &leads->batch->scratch, &key, &extras);
				take_state(leads, key, reinterpret_cast<ItemPointer>(DatumGetPointer(tids[r])), found[m], extras);
				row_lead[r] = leads->n - 1;
			}
			for (int m = 0; m < n_models; m++) {
				Leads *leads = by_model[m];
				if (!leads)
					continue;
				for (int i = 0; i < leads->n; i++) {
					std::optional<core::Micros> next = leads->batch->next_change[i];
					advance_lead(leads, i, *next - 1, as_of);
				}
				record_timed(leads, &count);
			}
			// Each row's stage now and when it may next change (NULL for a model that is gone).
			Datum *stages = static_cast<Datum *>(palloc(sizeof(Datum) * n)), *nexts = static_cast<Datum *>(palloc(sizeof(Datum) * n));
			bool *stage_nulls = static_cast<bool *>(palloc(sizeof(bool) * n)), *next_nulls = static_cast<bool *>(palloc(sizeof(bool) * n));
			for (uint64 r = 0; r < n; r++) {
				stage_nulls[r] = next_nulls[r] = true;
				stages[r] = nexts[r] = (Datum) 0;
				if (row_lead[r] < 0 && row_model[r] < n_models) {
					// Left as it is (see state_fits), but for its place on the schedule.
					bool isnull;
					HeapTupleHeader row = DatumGetHeapTupleHeader(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull));
					stages[r] = GetAttributeByNum(row, ColStage, &stage_nulls[r]);
				}
				if (row_lead[r] < 0)
					continue;
				Batch *batch = by_model[row_model[r]]->batch;
				const std::optional<std::string> &stage = batch->old_stage[row_lead[r]];
				const std::optional<core::Micros> &next = batch->next_change[row_lead[r]];
				stage_nulls[r] = !stage.has_value();
				stages[r] = stage ? CStringGetTextDatum(stage->c_str()) : (Datum) 0;
				next_nulls[r] = !next.has_value();
				nexts[r] = next ? TimestampTzGetDatum(*next) : (Datum) 0;
			}
			if (direct_state_access) {
				// The locked rows, updated in place through their tuple ids (as the trigger does).
				StateTable *st = state_table_open(static_cast<KeyKind>(kind));
				Datum values[kStateCols];
				bool nulls[kStateCols];
				for (uint64 r = 0; r < n; r++) {
					bool isnull;
					HeapTupleData tuple;
					row_tuple(DatumGetHeapTupleHeader(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull)),
					          InvalidOid, &tuple);
					heap_deform_tuple(&tuple, plans->rowdesc, values, nulls);
					values[ColStage - 1] = stages[r];
					nulls[ColStage - 1] = stage_nulls[r];
					values[ColNextChange - 1] = nexts[r];
					nulls[ColNextChange - 1] = next_nulls[r];
					if (plans->has_stage_at) {
						values[ColStageAt - 1] = TimestampTzGetDatum(as_of);
						nulls[ColStageAt - 1] = false;
					}
					state_row_update(st, reinterpret_cast<ItemPointer>(DatumGetPointer(tids[r])),
					                 heap_form_tuple(plans->rowdesc, values, nulls));
				}
				state_table_close(st);
				CommandCounterIncrement();
			} else {
				Datum args[4] = {make_array(tids, nullptr, (int) n, TIDOID),
				                 make_array(stages, stage_nulls, (int) n, TEXTOID),
				                 make_array(nexts, next_nulls, (int) n, TIMESTAMPTZOID), TimestampTzGetDatum(as_of)};
				if (SPI_execute_plan(plans->plans[SetStage], args, nullptr, false, 0) != SPI_OK_UPDATE)
					elog(ERROR, "leadscore: could not write the stages of lead states");
			}
			SPI_freetuptable(rows);
			MemoryContextSwitchTo(old);
			MemoryContextReset(chunk_cxt);
		}
	}
	MemoryContextDelete(chunk_cxt);
	return count;
}

} // namespace leadscore::pg
