// leadscore core: the lines of a lead's explanation (leadscore.explain), one per rule, inactivity step,
// engagement reset in force, and binding floor or ceiling. Their weighted values sum to the score.
// No PostgreSQL header may be included here or in any file of src/core.
#pragma once

#include "score.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace leadscore::core {

struct ExplainLine {
	std::string name;                    // the rule's or step's; "(floor)" / "(ceiling)"; empty for a reset
	std::string kind;                    // fit, engagement, inactivity, reset, limit or stage
	std::optional<std::string> category; // the rule's category, if any
	int64_t hits = 0;
	std::optional<double> points, raw, decayed, capped; // none on a limit line
	double weighted = 0;                                // the line's share of the score
	std::optional<Micros> reset_at;                     // a reset line: the reset in force (it scores nothing itself)
};

// The lines for `state` and its evaluation (evaluate(..., explain = true)), in this order: the engagement
// reset in force, if any (events before it count in no rule); every lead rule, event rule and inactivity
// step (an inactivity step has 1 hit while it applies); the floor or ceiling when it binds, as a line of
// its own so that the lines sum to the score; under stage hysteresis, a line of kind stage (no points) when
// the lead is held in a stage its score no longer reaches.
std::vector<ExplainLine> explain_lines(const ModelSpec &model, const LeadState &state, const ScoreResult &result);

} // namespace leadscore::core
