// The hottest leads of a model at any time, from two indexes of the state table (see core/hot.h):
// Fagin's threshold algorithm over the rows in decreasing hot_fit and in decreasing hot_key.
#include "state.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

using namespace leadscore;
using namespace leadscore::pg;

namespace {

// C++ side of one call (owned by its memory context).
struct HotScan {
	std::unordered_set<uint64_t> seen; // state rows read (by tuple id)
	core::HotLeads hits;               // the best so far
	HotScan(std::optional<int64_t> n, std::optional<double> min_score) : hits(n, min_score) {}
	Oid reader = InvalidOid;     // the caller: only the leads it sees count (may_read)
	void *visibility = nullptr;  // may_read's cache
	MemoryContext cxt = nullptr; // the call's memory context
};

// One side of the algorithm: the model's state rows in decreasing order of one key.
struct Side {
	Portal portal;
	double last; // the key of the last row read: no row still unread has a larger one
	bool done;
	int fetch; // rows to read next: from a few, doubling up to kMaxFetch
};

constexpr int kFirstFetch = 16, kMaxFetch = 1024;

} // namespace

// Reads a state row (a whole-row value) and keeps its lead if it is among the best so far.
static void consider(const Cache *cache, const CachedModel &model, Batch *batch, HotScan *scan, HeapTupleHeader row,
                     TimestampTz as_of)
{
	Datum key;
	RowExtras extras;
	if (!state_from_row(cache, row, &batch->scratch, &key, &extras))
		return;
	if (!may_read(&scan->visibility, scan->cxt, cache, model.spec.id, key, scan->reader))
		return;
	if (!core::valid_at(batch->scratch, as_of))
		rebuild_events(cache, model, batch, key, as_of, &batch->scratch, nullptr);
	held_stage(cache, model, batch, key, &batch->scratch, extras, as_of);
	bool wanted = false;
	ls_cpp([&] {
		batch->result = core::evaluate(model.spec, batch->scratch, as_of);
		wanted = scan->hits.wanted(batch->result.score);
	});
	if (!wanted)
		return;
	char *lead = key_text(model.key, key);
	ls_cpp([&] {
		const core::ScoreResult &r = batch->result;
		scan->hits.offer(
			core::HotLead{r.score, r.fit, r.engagement, r.stage, r.grade, batch->scratch.last_activity, lead});
	});
	pfree(lead);
}

// Reads the next rows of one side; false when it has no more.
static bool read_side(const Cache *cache, const CachedModel &model, Batch *batch, HotScan *scan, Side *side,
                      TimestampTz as_of)
{
	int fetch = side->fetch;
	side->fetch = Min(fetch * 2, kMaxFetch);
	SPI_cursor_fetch(side->portal, true, fetch);
	SPITupleTable *rows = SPI_tuptable;
	uint64 count = SPI_processed;
	for (uint64 r = 0; r < count; r++) {
		bool isnull, key_null;
		ItemPointer tid = (ItemPointer) DatumGetPointer(SPI_getbinval(rows->vals[r], rows->tupdesc, 1, &isnull));
		Datum key = SPI_getbinval(rows->vals[r], rows->tupdesc, 3, &key_null);
		// A row not written since 1.2 has no keys: it could be anything (NULLs come first).
		side->last = key_null ? INFINITY : DatumGetFloat8(key);
		uint64 id = ((uint64) ItemPointerGetBlockNumber(tid) << 16) | ItemPointerGetOffsetNumber(tid);
		bool fresh = false;
		ls_cpp([&] { fresh = scan->seen.insert(id).second; });
		if (!fresh)
			continue;
		HeapTupleHeader row = DatumGetHeapTupleHeader(SPI_getbinval(rows->vals[r], rows->tupdesc, 2, &isnull));
		consider(cache, model, batch, scan, row, as_of);
	}
	SPI_freetuptable(rows);
	side->done = count < (uint64) fetch;
	return !side->done;
}

static Datum emit(HotScan *scan, ReturnSetInfo *rsinfo);

// On Citus (leadscore.distribute() done): one query over the distributed state table, each shard scoring its
// leads at as_of and sending its best (Citus pushes the order and the limit down to the shards), as the
// caller, through the view that shows it only the leads it sees (as scores_at). Ties in lead order.
static Datum hottest_distributed(const CachedModel *model, std::optional<int64> n, std::optional<double> min_score,
                                 TimestampTz as_of, ReturnSetInfo *rsinfo)
{
	char *sql = psprintf("SELECT s.lead::text, e.score, e.fit, e.engagement, e.stage, e.grade, e.last_activity "
	                     "FROM leadscore._states_%s s CROSS JOIN LATERAL leadscore._eval(s, $2) e "
	                     "WHERE s.model_id = $1 AND e.score >= $3 ORDER BY e.score DESC, s.lead LIMIT $4",
	                     key_type(model->key).suffix);
	Oid types[4] = {INT4OID, TIMESTAMPTZOID, FLOAT8OID, INT8OID};
	Datum args[4] = {Int32GetDatum(model->state_id), TimestampTzGetDatum(as_of),
	                 Float8GetDatum(min_score ? *min_score : -INFINITY), Int64GetDatum(n ? *n : 0)};
	char nulls[4] = {' ', ' ', ' ', n ? ' ' : 'n'};
	spi_connect();
	if (SPI_execute_with_args(sql, 4, types, args, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "leadscore: could not read the hottest leads of model \"%s\"", model->spec.name.c_str());
	for (uint64 r = 0; r < SPI_processed; r++) {
		Datum values[7];
		bool isnull[7];
		for (int c = 0; c < 7; c++)
			values[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1, &isnull[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	SPI_finish();
	return (Datum) 0;
}

extern "C" {

// _hottest(model, n, min_score, as_of): the n best leads at as_of (n NULL: all), or those whose score reaches
// min_score (NULL: no minimum), best first.
LS_FUNCTION(leadscore_hottest);
Datum leadscore_hottest(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("model must not be NULL")));
	if (PG_ARGISNULL(3))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("as_of must not be NULL")));
	char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	std::optional<int64> n;
	if (!PG_ARGISNULL(1))
		n = PG_GETARG_INT64(1);
	std::optional<double> min_score;
	if (!PG_ARGISNULL(2))
		min_score = PG_GETARG_FLOAT8(2);
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(3);
	if (n && *n < 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("n must not be negative")));
	if (min_score && std::isnan(*min_score))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("min_score must not be NaN")));
	InitMaterializedSRF(fcinfo, 0);
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);

	const Cache *cache = get_cache();
	const CachedModel *model = known_model(cache, name);
	check_read(cache, *model);
	if (n && *n == 0)
		return (Datum) 0;
	if (!scope_active() && !model->tables.empty() && OidIsValid(citus_state_table(model->key)))
		return hottest_distributed(model, n, min_score, as_of, rsinfo);
	if (!OidIsValid(state_relid(model->key)))
		return (Datum) 0;

	Leads leads;
	leads_init(&leads, cache, model, CurrentMemoryContext);
	Batch *batch = leads.batch;
	HotScan *scan = nullptr;
	ls_cpp([&] { scan = new HotScan(n, min_score); });
	register_delete(
		CurrentMemoryContext, [](void *p) { delete static_cast<HotScan *>(p); }, scan);
	scan->reader = GetUserId();
	scan->cxt = CurrentMemoryContext;
	const char *suffix = key_type(model->key).suffix;
	Datum id = Int32GetDatum(model->state_id); // of its state rows
	Oid int4 = INT4OID;

	// The state rows are read as the extension's owner; each lead counts only if the caller sees it.
	RoleSwitch saved;
	as_role(cache->owner, &saved);
	spi_connect();
	// Leads reset later than as_of: their rows no longer hold the events that counted then, nor bound
	// their score at as_of; they are read apart.
	char *reset_table = psprintf("leadscore.engagement_reset_%s", suffix);
	if (state_features(model->key).engagement_resets) {
		char *sql =
			psprintf("SELECT s.ctid, s, 0::float8 FROM leadscore.state_%1$s s WHERE s.model_id = $1 AND s.lead IN "
		             "(SELECT r.lead FROM %2$s r WHERE r.model_id = $3 AND r.reset_at > $2)",
		             suffix, reset_table);
		Oid types[3] = {INT4OID, TIMESTAMPTZOID, INT4OID};
		Datum args[3] = {id, TimestampTzGetDatum(as_of), Int32GetDatum(model->spec.id)};
		Portal portal = SPI_cursor_open_with_args(nullptr, sql, 3, types, args, nullptr, true, 0);
		Side apart{portal, 0, false, kMaxFetch};
		while (read_side(cache, *model, batch, scan, &apart, as_of))
			;
		SPI_cursor_close(portal);
	}

	if (!model->hot_index) {
		// No keys: every lead is read (what sorting scores_at would do, without the sort).
		char *sql = psprintf("SELECT s.ctid, s, 0::float8 FROM leadscore.state_%s s WHERE s.model_id = $1", suffix);
		Side all{SPI_cursor_open_with_args(nullptr, sql, 1, &int4, &id, nullptr, true, 0), 0, false, kMaxFetch};
		while (read_side(cache, *model, batch, scan, &all, as_of))
			;
		SPI_cursor_close(all.portal);
		SPI_finish();
		end_as_role(&saved);
		return emit(scan, rsinfo);
	}

	// Every state row of a model with hot_index has its keys (written with them, or by the recompute that
	// followed setting hot_index): the partial indexes hold them all.
	Side sides[2];
	const char *keys[2] = {"hot_fit", "hot_key"};
	for (int s = 0; s < 2; s++) {
		char *sql = psprintf("SELECT s.ctid, s, s.%2$s FROM leadscore.state_%1$s s WHERE s.model_id = $1 "
		                     "AND s.hot_key IS NOT NULL ORDER BY s.%2$s DESC",
		                     suffix, keys[s]);
		sides[s] = Side{SPI_cursor_open_with_args(nullptr, sql, 1, &int4, &id, nullptr, true, CURSOR_OPT_FAST_PLAN),
		                INFINITY, false, kFirstFetch};
	}
	// Both sides in turn, until no unread row can be better than what is kept: its keys are at most the
	// last read on each side, so its score at most their bound.
	for (;;) {
		bool more = read_side(cache, *model, batch, scan, &sides[0], as_of) &&
		            read_side(cache, *model, batch, scan, &sides[1], as_of);
		if (!more)
			break; // one side is read to its end: every row has been seen
		if (scan->hits.done(core::hot_bound(model->spec, sides[0].last, sides[1].last, as_of)))
			break;
	}
	elog(DEBUG1, "leadscore: hottest leads of \"%s\": %zu state rows read, threshold keys %g and %g", name,
	     scan->seen.size(), sides[0].last, sides[1].last);
	for (Side &side : sides)
		SPI_cursor_close(side.portal);
	SPI_finish();
	end_as_role(&saved);
	return emit(scan, rsinfo);
}

} // extern "C"

// The leads kept, best first, into the function's result.
static Datum emit(HotScan *scan, ReturnSetInfo *rsinfo)
{
	std::vector<core::HotLead> *best = nullptr;
	ls_cpp([&] { best = new std::vector<core::HotLead>(scan->hits.take_best_first()); });
	register_delete(
		CurrentMemoryContext, [](void *p) { delete static_cast<std::vector<core::HotLead> *>(p); }, best);
	for (const core::HotLead &h : *best) {
		Datum values[7];
		bool nulls[7] = {};
		values[0] = CStringGetTextDatum(h.lead.c_str());
		values[1] = Float8GetDatum(h.score);
		values[2] = Float8GetDatum(h.fit);
		values[3] = Float8GetDatum(h.engagement);
		nulls[4] = !h.stage.has_value();
		values[4] = h.stage ? CStringGetTextDatum(h.stage->c_str()) : (Datum) 0;
		nulls[5] = !h.grade.has_value();
		values[5] = h.grade ? CStringGetTextDatum(h.grade->c_str()) : (Datum) 0;
		nulls[6] = !h.last_activity.has_value();
		values[6] = h.last_activity ? TimestampTzGetDatum(*h.last_activity) : (Datum) 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
