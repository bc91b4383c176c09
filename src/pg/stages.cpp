// Stage history: every stage change recorded (stage_change_<key>) and notified (channel leadscore_stage),
// those a row change causes (state_io.cpp's write) and those time alone causes: caught up for the leads a
// statement touches, and recorded for every lead due by the scheduled run (leadscore.advance_stages, whose
// SQL entry points are here too).
#include "state_row.h"

extern "C" {
#include "mb/pg_wchar.h"
}

#include <cmath>

namespace leadscore::pg {

// ------------------------------------------------------------------------------------------------
// Recording and notifying

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
	// On a Citus worker (a statement on a shard), a NOTIFY would make the distributed transaction's PREPARE
	// fail, and reach only the worker's listeners: the change is recorded, not notified (docs/operations.md).
	if (scope_active())
		return;
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


// ------------------------------------------------------------------------------------------------
// Stage changes caused by time alone

// Moves the stage of lead `key` on through time from `from` to `to` without row changes: `base` is its state
// (its stage and stage_since those at `from`; the walk leaves those at `to` there, nothing else of it
// changes). A lead with events dated after `from` is rebuilt into `scratch` at each of them: an event's
// arrival at its own time is a change of its own. Each change goes to batch->timed as lead `record_as`
// (-1: none, a reader's walk); next_change, if given, gets when the stage may next change after `to`.
// The scheduled run (advance_lead) and the readers (held_stage) walk alike through here.
static void walk_stage(const Cache *cache, const CachedModel &model, Batch *batch, Datum key, core::LeadState *base,
                       core::LeadState *scratch, core::Micros from, core::Micros to, int record_as,
                       std::optional<core::Micros> *next_change)
{
	const core::ModelSpec &spec = model.spec;
	core::Micros t = from;
	bool at_event = false;
	for (;;) {
		core::LeadState *at_t = base;
		std::optional<core::Micros> next_event;
		if (!core::valid_at(*base, t)) {
			ls_cpp([&] { *scratch = *base; });
			rebuild_events(cache, model, batch, key, t, scratch, nullptr, &next_event);
			at_t = scratch;
		}
		bool last = !next_event || *next_event > to;
		core::Micros until = last ? to : *next_event - 1;
		ls_cpp([&] {
			auto enter = [&](core::StageChange &&c) {
				base->stage = c.to;
				base->stage_since = c.at;
				if (record_as >= 0) {
					batch->timed.push_back(std::move(c));
					batch->timed_lead.push_back(record_as);
				}
			};
			if (at_event) {
				core::ScoreResult r = core::evaluate(spec, *at_t, t);
				if (r.stage != base->stage) {
					enter(core::StageChange{t, base->stage, r.stage, r.score});
					// The walk on from the event starts from the stage it gave, entered then.
					at_t->stage = base->stage;
					at_t->stage_since = base->stage_since;
				}
			}
			for (core::StageChange &c : core::stage_changes(spec, *at_t, t, until)) {
				c.from = base->stage;
				enter(std::move(c));
			}
			if (last && next_change) {
				at_t->stage = base->stage;
				at_t->stage_since = base->stage_since;
				*next_change = core::earliest(core::next_stage_change(spec, *at_t, to), next_event);
			}
		});
		if (last)
			return;
		t = *next_event;
		at_event = true;
	}
}

// Appends to batch->timed the stage changes of lead i in (from, to], the stage at `from` being
// batch->old_stage[i]; leaves the stage at `to` there (and in its state, with the instant it was entered)
// and in batch->next_change[i] when it may next change.
static void advance_lead(Leads *leads, int i, core::Micros from, core::Micros to)
{
	Batch *batch = leads->batch;
	core::LeadState *state = &batch->states[i];
	ls_cpp([&] { state->stage = batch->old_stage[i]; });
	walk_stage(leads->cache, *leads->model, batch, leads->keys[i], state, &batch->scratch, from, to, i,
	           &batch->next_change[i]);
	ls_cpp([&] { batch->old_stage[i] = state->stage; });
}

// ------------------------------------------------------------------------------------------------
// Stage hysteresis for the readers

bool stage_needs_history(const core::ModelSpec &spec, const RowExtras &extras, TimestampTz as_of)
{
	if (!spec.stage_has_memory())
		return false;
	return (extras.stage_at && as_of < *extras.stage_at) || (extras.next_change && as_of >= *extras.next_change);
}

// The stage the history of lead `key` records at as_of: the last change at or before it (NULL: none, or a
// change to no stage), and its instant in *since (none if no change). As the extension's owner: the caller
// sees the lead. In a shard's scope, its shard.
static char *recorded_stage(const Cache *cache, const CachedModel &model, Datum key, TimestampTz as_of,
                            std::optional<core::Micros> *since)
{
	char *sql = scoped_sql(psprintf("SELECT to_stage, changed_at FROM leadscore.stage_change_%s "
	                                " WHERE model_id = $1 AND lead = $2 AND changed_at <= $3 "
	                                " ORDER BY changed_at DESC, id DESC LIMIT 1",
	                                key_type(model.key).suffix));
	Oid types[3] = {INT4OID, key_type(model.key).type, TIMESTAMPTZOID};
	Datum args[3] = {Int32GetDatum(model.spec.id), key, TimestampTzGetDatum(as_of)};
	RoleSwitch saved;
	as_role(cache->owner, &saved);
	int rc = SPI_execute_with_args(sql, 3, types, args, nullptr, true, 1);
	end_as_role(&saved);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the stage history of model \"%s\"", model.spec.name.c_str());
	*since = std::nullopt;
	if (SPI_processed == 0)
		return nullptr;
	bool isnull;
	*since = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	Datum stage = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? nullptr : TextDatumGetCString(stage);
}

void held_stage(const Cache *cache, const CachedModel &model, Batch *batch, Datum key, core::LeadState *state,
                const RowExtras &extras, TimestampTz as_of)
{
	if (!stage_needs_history(model.spec, extras, as_of))
		return;
	if (extras.stage_at && as_of < *extras.stage_at) {
		std::optional<core::Micros> since;
		char *stage = recorded_stage(cache, model, key, as_of, &since);
		ls_cpp([&] {
			state->stage = stage ? std::optional<std::string>(stage) : std::nullopt;
			state->stage_since = since;
		});
		return;
	}
	// The stored stage holds until next_change; from just before it, time moves it on as a run does (without
	// recording).
	walk_stage(cache, model, batch, key, state, &batch->walk, *extras.next_change - 1, as_of, -1, nullptr);
}

void record_stage_changes(Leads *leads, int64 *count)
{
	Batch *batch = leads->batch;
	const CachedModel *model = leads->model;
	int n = (int) batch->timed.size();
	if (n > 0 && model->draft()) // a draft has no history (publish_concurrently builds its states)
		ls_cpp([&] {
			batch->timed.clear();
			batch->timed_lead.clear();
		});
	if (n == 0 || model->draft())
		return;
	int *lead = static_cast<int *>(palloc(sizeof(int) * n));
	Datum *from = static_cast<Datum *>(palloc(sizeof(Datum) * n)),
		  *to = static_cast<Datum *>(palloc(sizeof(Datum) * n)),
		  *scores = static_cast<Datum *>(palloc(sizeof(Datum) * n)),
		  *times = static_cast<Datum *>(palloc(sizeof(Datum) * n));
	bool *from_nulls = static_cast<bool *>(palloc(sizeof(bool) * n)),
		 *to_nulls = static_cast<bool *>(palloc(sizeof(bool) * n));
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
	ls_cpp([&] {
		batch->timed.clear();
		batch->timed_lead.clear();
	});
	sql_record_changes(model->key, model->spec.id, key_array(leads, lead, n), make_array(from, from_nulls, n, TEXTOID),
	                   make_array(to, to_nulls, n, TEXTOID), make_array(scores, nullptr, n, FLOAT8OID),
	                   make_array(times, nullptr, n, TIMESTAMPTZOID), n);
	// Each notified with the id of its row.
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
	record_stage_changes(leads, nullptr);
}

// On Citus: the stage changes due in a shard of a key type's state table, in the shard's scope.
struct ShardAdvance {
	TimestampTz as_of;
	std::optional<int> model;
	int kind;
};

static int64 advance_in_scope(void *arg)
{
	const ShardAdvance *advance = static_cast<const ShardAdvance *>(arg);
	return advance_stages(advance->as_of, advance->model, advance->kind);
}

// The stage changes due in this node's shards of the distributed state tables (InvalidOid: a key type not
// distributed), of every model or of one.
static int64 advance_local_shards(TimestampTz as_of, const Oid *distributed, std::optional<int> model = std::nullopt)
{
	int64 count = 0;
	for (int kind = 0; kind < kKeyKinds; kind++) {
		if (!OidIsValid(distributed[kind]))
			continue;
		int n;
		Oid *shards = local_shards(distributed[kind], &n);
		ShardAdvance advance{as_of, model, kind};
		for (int i = 0; i < n; i++)
			count += in_shard_scope(shards[i], advance_in_scope, &advance);
	}
	return count;
}

// The distributed state tables, by key type.
static void distributed_states(Oid *distributed)
{
	for (int kind = 0; kind < kKeyKinds; kind++)
		distributed[kind] = citus_state_table(static_cast<KeyKind>(kind));
}

int64 advance_stages(TimestampTz as_of, std::optional<int> only_model, int only_kind)
{
	// The state tables that Citus distributes: advanced per node, after the others (outside a shard scope: the
	// scheduled run of all models, or one model before its configuration changes, whose other nodes do the
	// same when the change reaches them).
	Oid distributed[kKeyKinds] = {};
	if (!scope_active())
		distributed_states(distributed);
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
	// One model: its own key type's state table alone (none if it tracks no table yet).
	const CachedModel *one = only_model ? cache->model_by_id(*only_model) : nullptr;
	for (int kind = 0; kind < kKeyKinds && only_model; kind++)
		if (!one || one->tables.empty() || static_cast<int>(one->key) != kind)
			distributed[kind] = InvalidOid;
	for (int kind = 0; kind < kKeyKinds; kind++) {
		KeyKind key = static_cast<KeyKind>(kind);
		if (only_model && (!one || one->tables.empty() || one->key != key))
			continue;
		if (only_kind >= 0 && kind != only_kind)
			continue;
		if (OidIsValid(distributed[kind]))
			continue;
		if (!OidIsValid(state_relid(key)))
			continue;
		TimestampTz from = DT_NOBEGIN; // the time the next batch starts from
		for (;;) {
			MemoryContext old = MemoryContextSwitchTo(chunk_cxt);
			if (!sql_due_rows(key, as_of, only_model ? std::optional<int>(one->state_id) : std::nullopt, from)) {
				MemoryContextSwitchTo(old);
				break; // a 1.0 schema: no schedule
			}
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
			int *row_model = static_cast<int *>(palloc(sizeof(int) * n)),
				*row_lead = static_cast<int *>(palloc(sizeof(int) * n));
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
				while (m < n_models && cache->models[m].state_id != model_id) // the row's model_id: a state_id
					m++;
				row_model[r] = m;
				row_lead[r] = -1;
				if (m == n_models || cache->models[m].draft())
					continue; // a model that is gone: its rows go with it; a draft's, publish_concurrently's
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
				record_stage_changes(leads, &count);
			}
			// Each row's stage now and when it may next change (NULL for a model that is gone).
			Datum *stages = static_cast<Datum *>(palloc(sizeof(Datum) * n)),
				  *nexts = static_cast<Datum *>(palloc(sizeof(Datum) * n));
			bool *stage_nulls = static_cast<bool *>(palloc(sizeof(bool) * n)),
				 *next_nulls = static_cast<bool *>(palloc(sizeof(bool) * n));
			// And when it entered its stage (left as the row says for a row left as it is).
			Datum *sinces = static_cast<Datum *>(palloc0(sizeof(Datum) * n));
			bool *since_nulls = static_cast<bool *>(palloc(sizeof(bool) * n)),
				 *since_set = static_cast<bool *>(palloc0(sizeof(bool) * n));
			for (uint64 r = 0; r < n; r++) {
				stage_nulls[r] = next_nulls[r] = true;
				stages[r] = nexts[r] = (Datum) 0;
				if (row_lead[r] < 0 && row_model[r] < n_models) {
					// Left as it is (see state_fits), but for its place on the schedule.
					bool isnull;
					HeapTupleHeader row = DatumGetHeapTupleHeader(
						SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull));
					stages[r] = GetAttributeByNum(row, ColStage, &stage_nulls[r]);
				}
				if (row_lead[r] < 0)
					continue;
				Batch *batch = by_model[row_model[r]]->batch;
				const std::optional<std::string> &stage = batch->old_stage[row_lead[r]];
				const std::optional<core::Micros> &next = batch->next_change[row_lead[r]];
				const std::optional<core::Micros> &since = batch->states[row_lead[r]].stage_since;
				since_set[r] = true;
				since_nulls[r] = !since.has_value();
				sinces[r] = since ? TimestampTzGetDatum(*since) : (Datum) 0;
				stage_nulls[r] = !stage.has_value();
				stages[r] = stage ? CStringGetTextDatum(stage->c_str()) : (Datum) 0;
				next_nulls[r] = !next.has_value();
				nexts[r] = next ? TimestampTzGetDatum(*next) : (Datum) 0;
			}
			// The locked rows, their stage, next change and (1.3) the instant the stage is of set.
			TupleDesc rowdesc = state_rowdesc(key);
			Datum values[kStateCols];
			bool nulls[kStateCols];
			HeapTuple *tuples = static_cast<HeapTuple *>(palloc(sizeof(HeapTuple) * n));
			ItemPointerData *ctids = static_cast<ItemPointerData *>(palloc(sizeof(ItemPointerData) * n));
			for (uint64 r = 0; r < n; r++) {
				bool isnull;
				HeapTupleData tuple;
				row_tuple(DatumGetHeapTupleHeader(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull)), InvalidOid,
				          &tuple);
				heap_deform_tuple(&tuple, rowdesc, values, nulls);
				values[ColStage - 1] = stages[r];
				nulls[ColStage - 1] = stage_nulls[r];
				values[ColNextChange - 1] = nexts[r];
				nulls[ColNextChange - 1] = next_nulls[r];
				if (rowdesc->natts >= ColStageAt) {
					values[ColStageAt - 1] = TimestampTzGetDatum(as_of);
					nulls[ColStageAt - 1] = false;
				}
				if (rowdesc->natts >= ColStageSince && since_set[r]) {
					nulls[ColStageSince - 1] = since_nulls[r];
					values[ColStageSince - 1] = sinces[r];
				}
				tuples[r] = heap_form_tuple(rowdesc, values, nulls);
				ctids[r] = *reinterpret_cast<ItemPointer>(DatumGetPointer(tids[r]));
			}
			StateTable *st = direct_state_access ? state_table_open(key) : nullptr;
			update_state_rows(key, st, ctids, nullptr, tuples, (int) n);
			if (st)
				state_table_close(st);
			SPI_freetuptable(rows);
			MemoryContextSwitchTo(old);
			MemoryContextReset(chunk_cxt);
		}
	}
	MemoryContextDelete(chunk_cxt);
	bool any = false;
	for (int kind = 0; kind < kKeyKinds; kind++)
		any = any || OidIsValid(distributed[kind]);
	if (any) {
		// On the coordinator, every worker at once (each in its own transaction, at this same instant); on
		// any node, its own shards. One model: this node's shards alone (its configuration change reaches
		// the others, which advance it there first: leadscore._config_pushed).
		if (!only_model && citus_coordinator()) {
			char *at = TIMESTAMP_NOT_FINITE(as_of) ? pstrdup(TIMESTAMP_IS_NOBEGIN(as_of) ? "'-infinity'::timestamptz"
			                                                                             : "'infinity'::timestamptz")
			                                       : psprintf("'2000-01-01 00:00:00+00'::timestamptz + " INT64_FORMAT
			                                                  " * interval '1 microsecond'",
			                                                  (int64) as_of);
			count += citus_sum_on_workers(psprintf("SELECT leadscore._advance_node(%s)", at),
			                              "the stages could not be advanced");
		}
		count += advance_local_shards(as_of, distributed, only_model);
	}
	return count;
}

} // namespace leadscore::pg

using namespace leadscore::pg;

extern "C" {

LS_FUNCTION(leadscore_advance_stages);
Datum leadscore_advance_stages(PG_FUNCTION_ARGS)
{
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(0);
	spi_connect();
	int64 recorded = advance_stages(as_of);
	SPI_finish();
	PG_RETURN_INT64(recorded);
}

// Before a model's configuration changes: its stage changes due so far, under the configuration they
// happened with.
LS_FUNCTION(leadscore_advance_model);
Datum leadscore_advance_model(PG_FUNCTION_ARGS)
{
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	spi_connect();
	const CachedModel *model = get_cache()->model_by_name(name);
	int64 recorded = model ? advance_stages(GetCurrentTransactionStartTimestamp(), model->spec.id) : 0;
	SPI_finish();
	PG_RETURN_INT64(recorded);
}

// Citus, on the coordinator (leadscore.relay_stage_changes): the notification of a stage change recorded
// on a worker, the payload one server sends (cut as it cuts it).
LS_FUNCTION(leadscore_notify_stage_change);
Datum leadscore_notify_stage_change(PG_FUNCTION_ARGS)
{
	char *text_args[4];
	for (int i = 0; i < 4; i++)
		text_args[i] = PG_ARGISNULL(i) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(i));
	if (!text_args[0] || !text_args[1] || PG_ARGISNULL(4) || PG_ARGISNULL(5) || PG_ARGISNULL(6))
		ereport(ERROR,
		        (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("model, lead, score, at and id must not be NULL")));
	notify_change(text_args[0], text_args[1], text_args[2], text_args[3], PG_GETARG_FLOAT8(4), PG_GETARG_TIMESTAMPTZ(5),
	              PG_GETARG_INT64(6));
	PG_RETURN_VOID();
}

// On a Citus node, from leadscore.advance_stages on the coordinator: the stage changes due in this node's
// shards.
LS_FUNCTION(leadscore_advance_node);
Datum leadscore_advance_node(PG_FUNCTION_ARGS)
{
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(0);
	spi_connect();
	Oid distributed[kKeyKinds];
	distributed_states(distributed);
	int64 recorded = advance_local_shards(as_of, distributed);
	SPI_finish();
	PG_RETURN_INT64(recorded);
}

} // extern "C"
