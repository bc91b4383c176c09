// State I/O: the leads' state rows locked, read and written, by one interface with two implementations:
// direct access through the primary key (direct.cpp; a statement of a few rows, integer and uuid keys) and
// SQL statements (state_sql.cpp; missing rows, text keys, several key kinds, or leadscore.direct_state_access
// off). Both take the rows in the same (lead, model) order, so that either may go on from the other.
#include "state_row.h"

namespace leadscore::pg {

// Leads are read and written in chunks of this many: a statement or a recompute over millions of leads
// builds no array beyond PostgreSQL's 1 GB limit and holds no more than a chunk's rows at once.
static const int kChunk = 10000;

// ------------------------------------------------------------------------------------------------
// Reading

void take_state(Leads *leads, Datum key, ItemPointer ctid, bool *found, const RowExtras &extras)
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
		Datum *models = static_cast<Datum *>(palloc(sizeof(Datum) * n));
		Datum *keys = static_cast<Datum *>(palloc(sizeof(Datum) * n));
		Datum *ids = static_cast<Datum *>(palloc(sizeof(Datum) * n));
		int k = 0;
		for (int i = 0; i < n_all; i++)
			if (all[i]->model->key == key)
				for (int j = 0; j < all[i]->n; j++) {
					models[k] = Int32GetDatum(all[i]->model->state_id);
					ids[k] = Int32GetDatum(all[i]->model->spec.id);
					keys[k++] = all[i]->keys[j];
				}
		sql_ensure_rows(key, models, keys, ids, n);
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
			items[k++] = LockItem{leads->keys[j], leads->model->state_id, i, j};
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
		if (state_row_lock(leads->direct, leads->model->state_id, leads->keys[0], &ctid, &row)) {
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
		sql_read_rows(leads->model->key, leads->model->state_id, key_array(leads, which, n),
		              mode == ReadMode::Unlocked);
		take_states(leads, found);
		SPI_freetuptable(SPI_tuptable);
	}
}

// ------------------------------------------------------------------------------------------------
// Writing

void update_state_rows(KeyKind kind, StateTable *st, ItemPointer ctids, const int *which, HeapTuple *tuples, int n)
{
	if (!st) {
		sql_update_rows(kind, ctids, which, tuples, n);
		return;
	}
	for (int r = 0; r < n; r++)
		state_row_update(st, &ctids[which ? which[r] : r], tuples[r]);
	// What this statement wrote, later statements of the transaction must see.
	CommandCounterIncrement();
}

// Writes the leads lo..hi-1 (see write_states).
static void write_chunk(Leads *leads, int lo, int hi, TimestampTz now, bool insert)
{
	const CachedModel *model = leads->model;
	const core::ModelSpec &spec = model->spec;
	Batch *batch = leads->batch;
	int n = hi - lo;

	HeapTuple *tuples = static_cast<HeapTuple *>(palloc(sizeof(HeapTuple) * n));
	int *gone = static_cast<int *>(palloc(sizeof(int) * n));
	int n_rows = 0, n_gone = 0;
	TupleDesc rowdesc = state_rowdesc(model->key);
	bool timed = state_features(model->key).state_next_change && !spec.stages.empty();
	int *row_lead = static_cast<int *>(palloc(sizeof(int) * n));

	for (int i = lo; i < hi; i++) {
		core::LeadState *state = &batch->states[i];
		if (state->empty()) {
			// A lead gone (no lead row, no event left): its state goes, and its stage with it, recorded.
			if (batch->old_stage[i])
				ls_cpp([&] {
					batch->timed.push_back(core::StageChange{now, batch->old_stage[i], std::nullopt, 0.0});
					batch->timed_lead.push_back(i);
				});
			gone[n_gone++] = i;
			continue;
		}
		// The stage now; a lead with events dated later than now is scored from its events up to now. Under
		// stage hysteresis it depends on the stage the lead had until now (a recompute's fresh states too).
		if (spec.stage_has_memory())
			ls_cpp([&] { state->stage = batch->old_stage[i]; });
		const core::LeadState *at_now = state;
		std::optional<core::Micros> next_event;
		if (!core::valid_at(*state, now)) {
			ls_cpp([&] { batch->scratch = *state; });
			rebuild_events(leads->cache, *model, batch, leads->keys[i], now, &batch->scratch, nullptr, &next_event);
			at_now = &batch->scratch;
		}
		ls_cpp([&] {
			core::ScoreResult result = core::evaluate(spec, *at_now, now);
			if (result.stage != batch->old_stage[i]) { // recorded with the chunk's rows (record_stage_changes)
				batch->timed.push_back(core::StageChange{now, batch->old_stage[i], result.stage, result.score});
				batch->timed_lead.push_back(i);
				state->stage_since = now;
			}
			state->stage = result.stage;
			if (!timed)
				return;
			// When time alone may next change the stage (or a lead's future-dated event arrive): the scheduled
			// run (leadscore.advance_stages) wakes the lead then; a cheap lower bound is enough here.
			batch->next_change[i] = core::next_change_to_store(core::stage_change_lower_bound(spec, *at_now, now,
			                                                                                  result.score),
			                                                   next_event,
			                                                   insert ? std::nullopt : batch->next_change[i], now);
		});
		row_lead[n_rows] = i;
		tuples[n_rows++] = state_to_tuple(rowdesc, *model, leads->keys[i], *state, batch->next_change[i],
		                                  batch->hot_key[i], now);
	}

	if (n_rows > 0 && insert)
		sql_insert_rows(model->key, tuples, n_rows);
	else if (n_rows > 0)
		update_state_rows(model->key, leads->direct, leads->ctids, row_lead, tuples, n_rows);
	if (n_gone > 0 && !insert)
		sql_delete_rows(model->key, model->state_id, key_array(leads, gone, n_gone));
	record_stage_changes(leads, nullptr);
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

} // namespace leadscore::pg
