// Per-backend cache of the compiled models: rule conditions compiled once into executor expressions,
// reloaded after any change of leadscore's configuration or of a tracked table's definition.
#pragma once

#include "pg.h"

#include <string>
#include <vector>

namespace leadscore::pg {

// The lead key types leadscore keeps state for; each has its own state and stage-change tables.
enum class KeyKind { Int4, Int8, Uuid, Text };
inline constexpr int kKeyKinds = 4;

struct KeyType {
	KeyKind kind;
	const char *suffix; // state_<suffix>, stage_change_<suffix>
	Oid type;           // the key's type in leadscore's tables
};
const KeyType &key_type(KeyKind kind);

struct CompiledRule {
	int index; // into the model's lead_rules (lead table) or event_rules (event table)
	ExprState *expr;
	const char *predictor; // lead rules: a trained model whose probability scales the points, or NULL
	Oid author;            // the role whose rights the condition runs with (rule.author)
};

// One table a model tracks, with that model's enabled rules on it, compiled.
struct TrackedTable {
	int model = 0; // index into Cache::models
	Oid relid = InvalidOid;
	bool is_lead = false;
	AttrNumber key_attno = 0;  // lead key (lead table) or the column naming the lead (event table)
	AttrNumber time_attno = 0; // 0: no time column
	std::string name;          // qualified table name, for queries and messages
	std::string key_column, time_column;
	std::vector<CompiledRule> rules;        // the model's enabled rules on this table
	mutable SPIPlanPtr scan_plan = nullptr; // the events of one lead (event tables), prepared on first use
};

struct CachedModel {
	core::ModelSpec spec;
	KeyKind key = KeyKind::Int8;
	int lead_table = -1;     // index into Cache::tables, -1 if none
	std::vector<int> tables; // indexes into Cache::tables
	bool hot_index = false;  // its state rows keep the hottest-leads keys (model.hot_index, 1.2)
	int state_id = 0;        // the number its state rows carry (model.state_id, 1.6; its id before)
	int building = 0;        // a draft of it whose states publish_concurrently builds (its id), or 0
	std::string draft_of;    // a draft (model.draft_of, 1.6): the live model's name; empty for a live model
	bool draft() const { return !draft_of.empty(); }
};

// Which of leadscore's schema features the installed schema has. The library may be newer than the schema:
// between the install of a new version's files and ALTER EXTENSION UPDATE, and while the update scripts
// run. Probed in one place (probe_schema): when the cache is loaded (Cache::schema, loaded again when a
// configuration table changes shape), and when the statements on a state table are prepared (the state
// tables' features, state_features(kind) in state.h: they follow that table's current shape).
struct SchemaFeatures {
	bool model_grace = false;          // model.grace (1.1)
	bool inactivity_rules = false;     // leadscore.inactivity_rule (1.1)
	bool rule_predictor = false;       // rule.predictor (1.1)
	bool state_next_change = false;    // state_<key>.next_change (1.1)
	bool model_hot_index = false;      // model.hot_index (1.2)
	bool rule_period_cap = false;      // rule.max_per_period and rule.period (1.2)
	bool state_hot = false;            // state_<key>.reset_at, hot_fit and hot_key (1.2)
	bool engagement_resets = false;    // leadscore.engagement_reset_<key> (1.2)
	bool state_stage_at = false;       // state_<key>.stage_at (1.3)
	bool rule_author = false;          // rule.author (1.4)
	bool rule_checks = false;          // leadscore.rule's CHECK constraints on its own values (1.6)
	bool model_stage_margin = false;   // model.stage_exit_margin (1.6)
	bool model_stage_min_time = false; // model.stage_min_time (1.6)
	bool stage_holds = false;          // stage.exit_margin and stage.min_time (1.6)
	bool state_stage_since = false;    // state_<key>.stage_since (1.6)
	bool model_draft = false;          // model.draft_of and model.state_id (1.6)
	bool draft_build = false;          // leadscore.draft_build and draft_touch_<key> (1.6)
};
// The features of the schema as it is now (catalog look-ups, no SPI).
SchemaFeatures probe_schema(KeyKind kind = KeyKind::Int8);

struct Cache {
	SchemaFeatures schema;
	std::vector<CachedModel> models;
	std::vector<TrackedTable> tables;

	mutable Oid state_relids[kKeyKinds] = {}; // leadscore.state_<key>, looked up on first use
	Oid watched[6] = {};                      // leadscore's tables whose change of shape reloads the cache
	Oid owner = InvalidOid;                   // the extension's owner (extension_owner())

	const CachedModel *model_by_id(int id) const;
	const CachedModel *model_by_state(int state_id) const; // the model whose state rows carry state_id
	const CachedModel *model_by_name(const char *name) const;
};

// The table leadscore.state_<key> (InvalidOid if missing), remembered while the cache is valid (an
// extension dropped and created again invalidates it).
Oid state_relid(KeyKind kind);

// Citus (citus.cpp): leadscore scores local tables only, and refuses the tables Citus manages.
// Whether relid is a Citus table (distributed, reference or Citus local).
bool citus_table(Oid relid);
// The Citus table relid is a shard of, or InvalidOid.
Oid citus_shard_of(Oid relid);
// An error if relid is a Citus table (`what` names it in the message: "table", "state table"...).
void refuse_citus_table(Oid relid, const char *what);
// An error if relid is a shard of a Citus table (leadscore's trigger fires there when Citus copied it).
void refuse_citus_shard(Oid relid);
// The shard scope (leadscore.distribute() done): while a statement on a shard is scored, leadscore's
// per-lead tables are its co-located local shards. scope_enter is false if relid is no shard.
bool scope_enter(Oid shard_relid);
// The scope of the shard that holds a lead's state, when its key type's state table is distributed and no
// scope is active; false otherwise. That shard on another node: an error, or false if !here_only. Needs an
// SPI connection.
bool scope_enter_key(KeyKind kind, Datum key, bool here_only = true);
void scope_leave();
bool scope_active();
// The local shard of a Citus table co-located with the scope's (the table itself outside a scope).
Oid scoped_relid(Oid logical);
char *scoped_name(Oid logical);
// sql with leadscore's per-lead tables that Citus distributes named by their shards of the scope.
char *scoped_sql(const char *sql);
// Work per node (needs an SPI connection): whether this node is the coordinator; the local shards of a
// distributed table; the sum of a command's bigint results on every worker, run at once (an error naming
// the workers where it failed, prefixed by `failure`).
bool citus_coordinator();
// The state table of a key type when Citus distributes it; InvalidOid otherwise.
Oid citus_state_table(KeyKind kind);
// work(arg) in the scope of a shard (left however work ends).
int64 in_shard_scope(Oid shard, int64 (*work)(void *arg), void *arg);
Oid *local_shards(Oid logical, int *n);
int64 citus_sum_on_workers(const char *command, const char *failure);
// A row names a model this node does not know: an error on a Citus node that has never taken a
// configuration (a worker added after leadscore.distribute(), shards moved there before it was copied):
// its leads would be left out of every read. Elsewhere (a deleted model's history) it returns.
void refuse_unconfigured_node(const Cache *cache);

// The current cache, loaded if needed (uses SPI). Valid until the end of the transaction.
const Cache *get_cache();
// The model of that name, or an error "model ... does not exist".
const CachedModel *known_model(const Cache *cache, const char *name);
// Forgets the cache in this backend now and in the others when this transaction commits.
void invalidate_cache();
// Registers the invalidation callbacks; called once from _PG_init.
void init_cache();

// Parses a rule condition against a relation, with the checks of a rule written by a user, as its author:
// names resolve in pg_catalog only; the author may read every column and execute every function it uses,
// and each function (or domain) belongs to the author or a superuser and is not temporary.
// Returns the planned boolean expression; raises a clear error naming the rule otherwise. legacy: a schema
// older than 1.4 (no rule.author): names in pg_catalog then public, rights not checked, as before.
Expr *compile_condition(Relation rel, const char *condition, const char *rule, const char *model, Oid author,
                        bool legacy = false);

// The identity before a switch (as_author, as_role), restored by end_as_author / end_as_role. An error
// restores it as well (PostgreSQL resets the user id when a transaction or subtransaction aborts).
struct RoleSwitch {
	Oid user;
	int sec;
};
// Runs what follows with the author's rights, in a security-restricted operation (as PostgreSQL runs an
// index expression as the table's owner), until end_as_author.
void as_author(Oid author, RoleSwitch *saved);
// The same switch from an identity already saved (several authors in turn, one save).
void become_author(Oid author, const RoleSwitch *saved);
void end_as_author(const RoleSwitch *saved);

// The owner of leadscore's tables (the extension's owner): the configuration is read as that role.
Oid extension_owner();
// Runs what follows as that role (the extension's owner, or a reader), with pg_catalog alone as search path
// (nothing a caller or another role put in a schema of its path takes part), until end_as_role.
void as_role(Oid role, RoleSwitch *saved);
void end_as_role(const RoleSwitch *saved);

// Advisory lock that serialises changes of a model's configuration (exclusive) against the
// triggers that update its state (shared).
void lock_model(int model_id, bool exclusive);

} // namespace leadscore::pg
