// The features of leadscore's installed schema (SchemaFeatures in cache.h), probed from the catalogs: the one
// place that knows which version added which table or column.
#include "cache.h"

extern "C" {
#include "catalog/pg_constraint.h"
}

namespace leadscore::pg {

static bool has_table(Oid nsp, const char *table)
{
	return OidIsValid(get_relname_relid(table, nsp));
}

static bool has_column(Oid nsp, const char *table, const char *column)
{
	Oid relid = get_relname_relid(table, nsp);
	return OidIsValid(relid) && get_attnum(relid, column) != InvalidAttrNumber;
}

SchemaFeatures probe_schema(KeyKind kind)
{
	SchemaFeatures f;
	Oid nsp = get_namespace_oid("leadscore", false);
	char state[NAMEDATALEN], resets[NAMEDATALEN];
	snprintf(state, sizeof(state), "state_%s", key_type(kind).suffix);
	snprintf(resets, sizeof(resets), "engagement_reset_%s", key_type(kind).suffix);
	f.model_grace = has_column(nsp, "model", "grace");
	f.inactivity_rules = has_table(nsp, "inactivity_rule");
	f.rule_predictor = has_column(nsp, "rule", "predictor");
	f.state_next_change = has_column(nsp, state, "next_change");
	f.model_hot_index = has_column(nsp, "model", "hot_index");
	f.rule_period_cap = has_column(nsp, "rule", "max_per_period");
	f.state_hot = has_column(nsp, state, "hot_key");
	f.engagement_resets = has_table(nsp, resets);
	f.state_stage_at = has_column(nsp, state, "stage_at");
	f.rule_author = has_column(nsp, "rule", "author");
	f.model_stage_margin = has_column(nsp, "model", "stage_exit_margin");
	f.model_stage_min_time = has_column(nsp, "model", "stage_min_time");
	f.stage_holds = has_column(nsp, "stage", "exit_margin");
	f.state_stage_since = has_column(nsp, state, "stage_since");
	f.model_draft = has_column(nsp, "model", "draft_of");
	f.draft_build = has_table(nsp, "draft_build");
	Oid rule = get_relname_relid("rule", nsp);
	f.rule_checks = OidIsValid(rule) && OidIsValid(get_relation_constraint_oid(rule, "points must be finite", true));
	return f;
}

} // namespace leadscore::pg
