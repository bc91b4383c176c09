// The rebuild of a lead's engagement from its events: a lead whose latest event went back (an event
// deleted or moved earlier), a state asked for at an instant before some of its events, a reset. The
// events are read from each event table by a prepared statement on its lead column.
#include "state.h"

namespace leadscore::pg {

static SPIPlanPtr event_scan_plan(const TrackedTable &table)
{
	bool scoped = scope_active(); // a shard's own events: prepared for this statement alone
	if (table.scan_plan && !scoped)
		return table.scan_plan;
	char *sql = psprintf("SELECT t FROM %s t WHERE %s = $1", scan_source(table),
	                     quote_identifier(table.key_column.c_str()));
	Oid argtype = get_atttype(table.relid, table.key_attno);
	SPIPlanPtr plan = SPI_prepare_cursor(sql, 1, &argtype, CURSOR_OPT_GENERIC_PLAN);
	if (!plan)
		elog(ERROR, "leadscore: could not prepare \"%s\"", sql);
	if (scoped)
		return plan;
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
bool rebuild_events(const Cache *cache, const CachedModel &model, Batch *batch, Datum key,
                    std::optional<core::Micros> as_of, core::LeadState *state, const TrackedTable *only,
                    std::optional<core::Micros> *next_after)
{
	RoleSwitch saved;
	as_role(cache->owner, &saved);
	bool whole = !only;
	if (rebuild_events_read(cache, model, batch, key, as_of, state, only, next_after)) {
		whole = true;
		// A whole rebuild reads every event table of the lead, this statement's changes included: those of
		// another table whose triggers have yet to run would then count twice.
		for (int t : model.tables) {
			const TrackedTable &other = cache->tables[t];
			if (&other != only && !other.is_lead && AfterTriggerPendingOnRel(other.relid))
				ereport(ERROR,
				        (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				         errmsg("model \"%s\": lead %s's latest event moved back by more than %g half-lives in a "
				                "statement that also changes table %s",
				                model.spec.name.c_str(), key_text(model.key, key), kFarHalfLives, other.name.c_str()),
				         errhint("Change the two tables in separate statements.")));
		}
		(void) rebuild_events_read(cache, model, batch, key, as_of, state, nullptr, next_after);
	}
	end_as_role(&saved);
	return whole;
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

} // namespace leadscore::pg
