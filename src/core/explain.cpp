// leadscore core: the lines of a lead's explanation (see explain.h).
#include "explain.h"

namespace leadscore::core {

std::vector<ExplainLine> explain_lines(const ModelSpec &model, const LeadState &state, const ScoreResult &result)
{
	std::vector<ExplainLine> lines;
	if (state.reset_at) {
		ExplainLine reset;
		reset.kind = "reset";
		reset.points = reset.raw = reset.decayed = reset.capped = 0.0;
		reset.reset_at = state.reset_at;
		lines.push_back(std::move(reset));
	}
	for (const RuleResult &r : result.rules) {
		ExplainLine line;
		if (r.is_inactivity) {
			const InactivityStep &step = model.inactivity.at(r.index);
			line.name = step.name;
			line.kind = "inactivity";
			line.points = step.points;
		} else {
			const RuleSpec &rule = r.is_event ? model.event_rules.at(r.index) : model.lead_rules.at(r.index);
			line.name = rule.name;
			line.kind = r.is_event ? "engagement" : "fit";
			if (rule.category >= 0)
				line.category = model.categories.at(rule.category).name;
			line.points = rule.points;
		}
		line.hits = r.hits;
		line.raw = r.raw;
		line.decayed = r.decayed;
		line.capped = r.capped;
		line.weighted = r.weighted;
		lines.push_back(std::move(line));
	}
	if (result.score != result.total) {
		ExplainLine limit;
		limit.name = result.score > result.total ? "(floor)" : "(ceiling)";
		limit.kind = "limit";
		limit.hits = 1;
		limit.weighted = result.score - result.total;
		lines.push_back(std::move(limit));
	}
	if (result.stage && result.stage != band_for(model.stages, result.score)) {
		// Stage hysteresis keeps the lead in a stage its score no longer reaches: said, for no points.
		ExplainLine held;
		held.name = "(stage held: " + *result.stage + ")";
		held.kind = "stage";
		held.hits = 1;
		lines.push_back(std::move(held));
	}
	return lines;
}

} // namespace leadscore::core
