// Inside the state subsystem (state_row.cpp, state_sql.cpp, state_io.cpp, direct.cpp, stages.cpp): the
// columns of a state row, its codec, and the SQL statements on the state tables. Other files go through
// state.h.
#pragma once

#include "state.h"

namespace leadscore::pg {

// ------------------------------------------------------------------------------------------------
// The columns of leadscore.state_<key>; next_change came with version 1.1 (a 1.0 schema has the first
// eleven), reset_at, hot_fit and hot_key with 1.2, stage_at with 1.3, stage_since with 1.6.
enum StateCol {
	ColModel = 1,
	ColLead,
	ColHasLead,
	ColFit,
	ColEngN,
	ColEngW,
	ColEngFirst,
	ColEngRef,
	ColNEvents,
	ColLastActivity,
	ColStage,
	ColNextChange,
	ColResetAt,
	ColHotFit,
	ColHotKey,
	ColStageAt,
	ColStageSince,
	kStateCols = ColStageSince
};
inline constexpr const char *kStateColumns[kStateCols] = {"model_id",   "lead",          "has_lead",  "fit",
                                                          "eng_n",      "eng_w",         "eng_first", "eng_ref",
                                                          "n_events",   "last_activity", "stage",     "next_change",
                                                          "reset_at",   "hot_fit",       "hot_key",   "stage_at",
                                                          "stage_since"};

// ------------------------------------------------------------------------------------------------
// The codec (state_row.cpp)

// A state row as stored in its table (desc: the table's), or as a composite value (see state_from_row).
const CachedModel *state_from_tuple(const Cache *cache, HeapTuple tuple, TupleDesc desc, core::LeadState *state,
                                    Datum *key, RowExtras *extras = nullptr);
// A lead's state as a row of its state table (desc: the table's). hot_key: the engagement key as stored
// before (kept while it still bounds closely enough, see core/hot.h); stage_at: the instant the stage is of.
HeapTuple state_to_tuple(TupleDesc desc, const CachedModel &model, Datum key, const core::LeadState &st,
                         std::optional<core::Micros> next_change, std::optional<double> hot_key, TimestampTz stage_at);
// Whether a state row (a composite value) has the shape of its model's rules: not so while a
// configuration change is under way (the rules of an untracked table deleted, the recompute to come).
bool state_fits(const core::ModelSpec &spec, HeapTupleHeader row);
// A one-dimensional array of n elements (NULLs where nulls[i], if nulls is given); and back.
Datum make_array(Datum *elems, bool *nulls, int n, Oid elemtype);
void deconstruct(Datum array, Oid elemtype, Datum **elems, bool **nulls, int *n);

// ------------------------------------------------------------------------------------------------
// The SQL statements on the state tables (state_sql.cpp), prepared once per key kind (generic plans) and
// again when the table's row type changes (ALTER EXTENSION UPDATE adding a column, the extension
// re-created). Need an SPI connection. The state I/O (state_io.cpp) uses them where the direct access
// (direct.cpp) does not serve: missing rows, text keys, several key kinds at once, the setting off.

// The row descriptor of the state table of a key kind (the table's current shape).
TupleDesc state_rowdesc(KeyKind kind);
// Creates the missing rows of (models[i], keys[i]) and locks them all, in (lead, model) order: statements
// that take leads in increasing order cannot deadlock on them. A new row takes its lead's latest
// engagement reset (1.2).
void sql_ensure_rows(KeyKind kind, Datum *models, Datum *keys, Datum *ids, int n);
// Reads the rows (ctid, s) of one model's leads (an array of keys) into SPI_tuptable, with a fresh snapshot
// unless read_only (then the statement's).
void sql_read_rows(KeyKind kind, int32 model_id, Datum keys, bool read_only);
// Replaces locked rows, found by their tuple ids, by tuples of the table's row type (state_rowdesc).
void sql_update_rows(KeyKind kind, ItemPointer tids, const int *which, HeapTuple *tuples, int n);
// Inserts rows (tuples of the table's row type).
void sql_insert_rows(KeyKind kind, HeapTuple *tuples, int n);
// Deletes the rows of one model's leads (an array of keys).
void sql_delete_rows(KeyKind kind, int32 model_id, Datum keys);
// Records stage changes in stage_change_<key>: leads (an array of keys) with their from and to stages,
// scores and instants (arrays); returns their ids in SPI_tuptable, in that order.
void sql_record_changes(KeyKind kind, int32 model_id, Datum leads, Datum from, Datum to, Datum scores, Datum times,
                        int n);
// The rows (ctid, s) due by as_of (next_change <= as_of) from `from` on, of one model or all, at most 1,000
// in next_change order, locked FOR UPDATE SKIP LOCKED (concurrent runs share the work), into SPI_tuptable.
// False when the table has no next_change (a 1.0 schema).
bool sql_due_rows(KeyKind kind, TimestampTz as_of, std::optional<int> only_state_id, TimestampTz from);

// ------------------------------------------------------------------------------------------------
// Shared by the readers of state rows (state_io.cpp, stages.cpp)

// Takes a state read (in leads->batch->scratch, of lead key, found at ctid) as the state of its lead;
// marks it found.
void take_state(Leads *leads, Datum key, ItemPointer ctid, bool *found, const RowExtras &extras);
// Replaces the locked rows of leads (tuple ids ctids[which[i]]) by tuples: directly through st when given
// (one by one, in place), else by one statement.
void update_state_rows(KeyKind kind, StateTable *st, ItemPointer ctids, const int *which, HeapTuple *tuples, int n);
// Records the stage changes in leads->batch->timed (each at its own instant; timed_lead: their leads) in
// the model's history table, notifies each with the id of its row, and empties the list (stages.cpp):
// those a row change causes (state_io.cpp's write) and those time causes. Counts them into *count if given.
void record_stage_changes(Leads *leads, int64 *count);

} // namespace leadscore::pg
