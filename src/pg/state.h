// The state of leads (leadscore.state_<key>) and the work of one batch of changes: which leads it touches,
// their states, the stage changes it causes. Shared by the live trigger, recompute and the readers; each
// section names the file that implements it.
#pragma once

#include "cache.h"
#include "../core/hot.h"
#include "../core/key_index.h"
#include "../core/timeline.h"

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace leadscore::pg {

// ------------------------------------------------------------------------------------------------
// Lead keys (keys.cpp)

// C++ side of a batch; owned by a memory context (ls_owned), filled through ls_cpp.
struct Batch {
	core::IntKeyIndex int_ids;                            // integer keys -> lead index
	std::unordered_map<std::string, int> ids;             // other keys (their bytes) -> lead index
	std::string key;                                      // scratch: the key bytes looked up
	std::vector<core::LeadState> states;                  // per lead index
	std::vector<char> rebuild;                            // per lead index: must be rebuilt from its events
	std::vector<bool> matched;                            // scratch: event rule matches of one row
	std::vector<double> fit;                              // scratch: lead rule values of one row
	std::vector<std::optional<std::string>> old_stage;    // per lead index, as read
	std::vector<std::optional<core::Micros>> next_change; // per lead index: as read, then as to write
	std::vector<std::optional<double>> hot_key;           // per lead index: the hottest-leads engagement key as read
	std::vector<std::optional<core::Micros>> stage_at;    // per lead index: the instant its stored stage is of
	std::vector<core::StageChange> timed;                 // stage changes caused by time, to record
	std::vector<int> timed_lead;                          // their lead indexes
	core::LeadState scratch;                              // a state evaluated at another time
	core::LeadState walk;                                 // held_stage: the state at each instant of its walk
	core::PeriodCapBuild caps;                            // rebuild_events: the events of rules capped per period
	std::vector<core::PeriodCapBuild> lead_caps; // recompute: the same per lead index (one time per matching event)
	core::ScoreResult result;                    // the last evaluation, read by the glue
};

struct StateTable;

// PostgreSQL side of a batch: the key Datums, in the order of Batch's lead indexes.
struct Leads {
	const Cache *cache;
	const CachedModel *model;
	MemoryContext cxt;
	Batch *batch;
	Datum *keys;
	ItemPointerData *ctids; // where read_states found each lead's row
	StateTable *direct;     // the state table opened by read_states (LockOne), or NULL
	int n, size;
};

void leads_init(Leads *leads, const Cache *cache, const CachedModel *model, MemoryContext cxt);
// The lead index of a key (added with a fresh state when new).
int lead_index(Leads *leads, Datum key);
// The keys of leads which[0..n-1] (all of the first n if which is NULL), as an array of the key type.
Datum key_array(Leads *leads, const int *which, int n);
// The lead key as text, for messages and notifications.
char *key_text(KeyKind kind, Datum key);

// ------------------------------------------------------------------------------------------------
// Evaluating rules on rows of tracked tables (rules.cpp, with the compiler of their conditions)

// Evaluates a tracked table's rules on a row into batch->matched (event table) or batch->fit (lead table).
void evaluate_rules(const TrackedTable &table, const CachedModel &model, Batch *batch, TupleTableSlot *slot,
                    ExprContext *econtext);
// Event time of a row of an event table; none if the table has no time column.
// Returns false if the row is not an event (NULL or infinite time).
bool event_time(const TrackedTable &table, TupleTableSlot *slot, std::optional<core::Micros> *at);
// The lead index of a row of a tracked table, -1 if the row scores nothing (NULL lead, NULL time).
int row_lead(const TrackedTable &table, Leads *leads, TupleTableSlot *slot);
// Applies a row of a tracked table to the state of its lead (sign +1 inserted, -1 deleted).
void apply_row(const TrackedTable &table, Leads *leads, int lead, TupleTableSlot *slot, ExprContext *econtext,
               int sign);

// The FROM item that scans a tracked table's own rows: ONLY for a plain table (its triggers do not see
// inheritance children), all partitions for a partitioned one; in a shard scope, the co-located shard's rows
// with the table's attribute numbers.
char *scan_source(const TrackedTable &table);
// Calls each(tuple, arg) on every row of `SELECT t FROM <from> t` (rows of relid, read through a cursor
// in batches, with a fresh snapshot). The tuple is valid during the call.
// With `where` (over t and $1, of type param_type), the rows it keeps.
void scan_rows(const char *from, Oid relid, void (*each)(HeapTuple tuple, void *arg), void *arg,
               const char *where = nullptr, Oid param_type = InvalidOid, Datum param = (Datum) 0);

// ------------------------------------------------------------------------------------------------
// State I/O (state_io.cpp): one interface, with two implementations, direct (direct.cpp) and SQL
// (state_sql.cpp)

// The schema features of the state table of a key kind as it is now (next_change, the hottest-leads keys,
// stage_at: see SchemaFeatures), and of its engagement resets. Needs an SPI connection.
const SchemaFeatures &state_features(KeyKind kind);

// Creates the missing state rows of the leads of several models and locks them all, in (lead, model)
// order, in one statement per key type.
void lock_states(Leads **all, int n_all);

// Locks and reads the existing state rows of the leads of several models directly (direct.cpp), in the
// order lock_states takes them. False when it cannot (a row is missing, text keys, several key kinds):
// the caller goes on with lock_states and read_states.
bool lock_read_direct(Leads **all, int n_all);

enum class ReadMode {
	Unlocked, // a plain read (explain)
	Locked,   // rows locked by lock_states: read their latest version
	LockOne,  // one lead of one model: lock it by its key (creating its row if missing), then read
};
// Reads the state rows of leads (model, keys): fills states and old_stage of those found.
void read_states(Leads *leads, ReadMode mode);
// Writes back every lead's state: updates rows, deletes empty ones, records and notifies stage changes
// evaluated at `now`. Rows must exist (read_states with lock) unless insert is true.
void write_states(Leads *leads, TimestampTz now, bool insert);

// ------------------------------------------------------------------------------------------------
// The trigger (trigger.cpp)

// All the models that track the table score the statement together: their lead states are locked at
// once, in (lead, model) order, then each model applies the rows to its leads. The rows are of row type
// `rows_desc`; `desc` is the tracked table's (they differ for some partitions). old_rows / new_rows may
// be NULL.
void score_statement(const Cache *cache, const int *tables, int n_tables, TupleDesc desc, TupleDesc rows_desc,
                     Tuplestorestate *old_rows, Tuplestorestate *new_rows, TimestampTz now);
// The tracked tables of relid, in model id order (the order their locks are taken in), into out.
int tables_of(const Cache *cache, Oid relid, int *out);
// A lead's state rebuilt from an event table by a trigger of the statement whose triggers are firing: its
// rows in that table are already counted, those the statement's later triggers hold too (trigger.cpp).
// `whole`: every event of the lead was read (its event count too); else the rules of that table alone.
void note_rebuilt(const CachedModel &model, const TrackedTable &table, Datum key, bool whole);
// The table the models track that relid is or is a partition of (at any depth), with its tracked tables in
// *tables (*n of them); InvalidOid if none.
Oid tracked_root(const Cache *cache, Oid relid, int *tables, int *n);
// Takes the locks of root's models (shared); the cache is reloaded if a configuration change committed
// meanwhile. Returns the cache, root's tracked tables in *tables.
const Cache *lock_models(const Cache *cache, Oid root, int **tables, int *n);

// ------------------------------------------------------------------------------------------------
// Recompute (recompute.cpp)

// Scores a model's leads from scratch into leads (fresh from leads_init): every row of its tracked tables,
// with the engagement resets recorded for model resets_of; with keys (an array of the key type), the rows
// of those leads alone. Returns the rows read. Needs an SPI connection.
int64 score_from_scratch(Leads *leads, int resets_of, bool verbose, Datum keys = (Datum) 0);

// ------------------------------------------------------------------------------------------------
// Partitions (partitions.cpp)

// The (sub)transaction that a backend-lifetime variable's content belongs to: once it has ended
// (committed, aborted) the content went with its memory, and current() is false.
struct SubxactStamp {
	LocalTransactionId lxid = InvalidLocalTransactionId;
	SubTransactionId subxid = InvalidSubTransactionId;
	bool current() const;
	void set(); // to the current (sub)transaction
};

// Rows that join or leave a tracked table without a row trigger (ATTACH, TRUNCATE, DETACH, DROP of one of
// its partitions), scored as a statement on the tracked table would score them. Nothing for a
// table no model tracks an ancestor of. Need an SPI connection and the right to read the partition.
// The rows of the leaf partitions (at any depth) of one newly attached table, as inserted, in one statement:
void score_attached_rows(List *leaves);
// The rows of a leaf partition about to leave, read now, and scored as deleted by score_captured_rows once
// they are gone (AFTER TRUNCATE, ddl_command_end) in the same (sub)transaction, the rows of all leaves of a
// tracked table as one statement; forget_captured_rows drops what a command captured before (a new
// command starts); recompute_model tells captured_model_recomputed, and that model's rows are not scored
// again.
void capture_partition_rows(Oid leaf);
void score_captured_rows();
void forget_captured_rows();
void captured_model_recomputed(int model_id);

// ------------------------------------------------------------------------------------------------
// Stage history (stages.cpp)

// Stage changes caused by time alone. Each state row of a model with stages keeps the stage it last
// recorded (at some instant E) and next_change, an instant N > E at or before which the stage cannot
// change without a row change. catch_up records, for the leads a statement touches (read, not yet
// changed), the changes due by `now`; advance_stages records those of every lead due by as_of (rows
// taken with FOR UPDATE SKIP LOCKED: concurrent runs share the work, never wait). Both record each change
// with the instant it happened and move next_change on. Need an SPI connection.
void catch_up(Leads *leads, TimestampTz now);
// The instant a statement's row changes take effect and its stage changes are recorded at, once its leads'
// states are read (and locked): the transaction's time, or the latest instant a stored stage was recorded
// for (stage_at, 1.3) if later. A transaction that began before a scheduled run (or before another
// transaction's write) that recorded one of these leads meanwhile must not record a change dated before
// what is already recorded: each lead's history stays in order.
TimestampTz statement_instant(const Leads *leads, TimestampTz now);
// only_model: that model alone, under an exclusive model lock, with the cache as it is (the configuration
// of before a change being made).
// only_kind >= 0: that key type's state table alone (a shard of it, in a shard scope).
int64 advance_stages(TimestampTz as_of, std::optional<int> only_model = std::nullopt, int only_kind = -1);

// ------------------------------------------------------------------------------------------------
// The rebuild from events (rebuild.cpp) and engagement resets (reset.cpp)

// Replaces the engagement part of a lead's state with one built from its events (at or before as_of):
// all of it, or (only) the rules of one table and the latest activity. Needs an SPI connection.
// A whole rebuild at as_of also takes the engagement reset in force at as_of (from the history table);
// otherwise the state's reset_at stays as it is.
// With next_after (and as_of): also sets *next_after to the time of the lead's earliest event after as_of.
// True when the whole engagement was rebuilt (asked, or a partial rebuild that would have lost precision).
bool rebuild_events(const Cache *cache, const CachedModel &model, Batch *batch, Datum key,
                    std::optional<core::Micros> as_of, core::LeadState *state, const TrackedTable *only,
                    std::optional<core::Micros> *next_after = nullptr);

// The engagement reset of a lead in force at `at` (the latest reset_at <= at; without `at`, the latest of
// all), from leadscore.engagement_reset_<key> (reset.cpp); none if there is none (or a 1.1 schema).
// Needs an SPI connection.
std::optional<core::Micros> reset_in_force(const CachedModel &model, Datum key, std::optional<core::Micros> at);

// ------------------------------------------------------------------------------------------------
// The direct implementation of state I/O (direct.cpp)

// Direct access to a state table: find a row by its primary key, lock its latest version,
// update it in place, without the executor. Opened with RowExclusiveLock, kept until the transaction ends.
StateTable *state_table_open(KeyKind kind);
// The setting leadscore.direct_state_access (on by default): off, every access goes through SQL statements.
extern bool direct_state_access;
void define_direct_state_access();
void state_table_close(StateTable *st);
// Finds the row of (model_id, key), waits for writers in progress and locks its latest version: returns
// its tuple id and the tuple (valid until the next call), or false if there is no such row.
bool state_row_lock(StateTable *st, int32 model_id, Datum key, ItemPointer tid, HeapTuple *row);
// Replaces the (locked) row at tid by tuple (palloc'd; freed here), keeping the indexes up to date.
void state_row_update(StateTable *st, ItemPointer tid, HeapTuple tuple);
TupleDesc state_table_desc(StateTable *st);

// ------------------------------------------------------------------------------------------------
// State rows (state_row.cpp; state_row.h has the rest of the codec)

// A whole-row value (SELECT t FROM tbl t) as a tuple of its table, in *tuple (which must outlive its use).
void row_tuple(HeapTupleHeader row, Oid relid, HeapTupleData *tuple);

// What a state row keeps besides the state, as read: when its stage may next change (1.1) and its
// hottest-leads engagement key (1.2, see core/hot.h). Both are written back as they were while still
// right, so that the update of the row can stay HOT.
struct RowExtras {
	std::optional<core::Micros> next_change;
	std::optional<double> hot_key;
	std::optional<core::Micros> stage_at;
};

// A state row (leadscore.state_* composite) into a LeadState. Returns its model (NULL if the model is
// gone) and sets *key to the lead key (pointing into the row).
const CachedModel *state_from_row(const Cache *cache, HeapTupleHeader row, core::LeadState *state, Datum *key,
                                  RowExtras *extras = nullptr);

// Stage hysteresis (stages.cpp): under a model's stage_exit_margin the stage at as_of depends on the stage
// the lead had, the one its state row stores (`extras`: the instant it is of, when it may next change).
// Whether reading lead's stage at as_of needs held_stage: as_of before the stored stage's instant, or at or
// after when it may next change (a change that no scheduled run has recorded yet).
bool stage_needs_history(const core::ModelSpec &spec, const RowExtras &extras, TimestampTz as_of);
// Sets state->stage (the lead's state, valid at as_of; stage as stored) to its stage just before as_of, so
// that core::evaluate at as_of gives its stage: the history's at an instant before the stored one, else the
// stored stage moved on by time as a scheduled run would. Nothing when stage_needs_history is false. Needs
// an SPI connection (and on Citus the lead's shard scope).
void held_stage(const Cache *cache, const CachedModel &model, Batch *batch, Datum key, core::LeadState *state,
                const RowExtras &extras, TimestampTz as_of);

// ------------------------------------------------------------------------------------------------
// The read API's permission checks (visibility.cpp)

// Whether role `reader` may see lead `key` of a model: it may read the lead table's
// key column and, where row-level security restricts it there, sees the lead's row. *extra (a call site's
// cache, in cxt) keeps what it learnt for the rest of the query.
bool may_read(void **extra, MemoryContext cxt, const Cache *cache, int model_id, Datum key, Oid reader);
// A lead key written as text read as a key of `kind` into *key; false (nothing raised) when the text is no
// such key (core/key_text.h).
bool text_as_key(KeyKind kind, Datum value, Datum *key);
// A permission error unless the current user may read the key column of the model's lead table.
void check_read(const Cache *cache, const CachedModel &model);

// ------------------------------------------------------------------------------------------------
// Schema changes of tracked tables (ddl.cpp)

// leadscore._sync_triggers(relid): puts leadscore's triggers on a tracked table (and its partitions), or
// takes them off a table no model tracks. Needs an SPI connection.
void sync_triggers(Oid relid);

// ------------------------------------------------------------------------------------------------
// Recompute (recompute.cpp)

// A model's states recomputed from its tracked tables (the reference the live state must equal). Needs an
// SPI connection. Returns the number of leads scored (0 if the model does not exist).
int64 recompute_model(const char *name);

} // namespace leadscore::pg
