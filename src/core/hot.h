// leadscore core: the hottest leads of a model at any time, found from two time-free keys per lead.
// No PostgreSQL header may be included here or in any file of src/core.
//
// A lead's score at time t is at most
//     bound(t) = clamp(F + 2^(K - t / half_life), floor, ceiling)
// where F (the fit key) and K (the engagement key) do not depend on t:
//   - F sums, per category c (weight w_c; rules without a category: weight 1), |w_c| times the parts of
//     the category's lead rules that push the score up (capped points x fit of the sign of w_c), plus the
//     largest positive inactivity step;
//   - E0 sums the same for event rules, each rule's decayed total taken before its cap and at the time
//     its weights refer to (the state's ref; for a grace model, the end of the grace period), and
//     K = log2(E0) + that time / half_life (K = log2(E0) without half-life; -infinity when E0 = 0).
// Why it bounds: a rule cap only shrinks a total; a category cap clamps a subtotal into [-cap, cap], which
// for w_c > 0 is at most the sum of the subtotal's positive parts (>= 0 >= -cap), and for w_c < 0 at least
// minus the sum of its negative parts; inactivity steps add at most the largest positive one; decayed
// totals at t are the stored ones times 2^((ref - t) / half_life), a grace factor only lowers them (and
// 2^((end of grace - t) / half_life) >= 1 before the end of grace); events dated after t only add
// positive parts. Floor and ceiling are monotone. So the hottest leads at t are found by reading the
// leads in decreasing F and in decreasing K at once (Fagin's threshold algorithm), evaluating each lead
// read exactly, until the N-th best exact score reaches the bound of the keys last read on both sides.
// What it does not bound: a state whose engagement reset (reset_at) is later than t, which then counted
// events the state no longer holds; the caller reads those leads apart.
#pragma once

#include "score.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace leadscore::core {

struct HotKeys {
	double fit = 0;        // F
	double engagement = 0; // K, -infinity when no event part raises the score
};

// The keys of a state (sized for the model or untouched).
HotKeys hot_keys(const ModelSpec &model, const LeadState &state);

// An upper bound at t of the score of every state whose keys are at most (fit, engagement); +infinity
// for an infinite key. Includes a relative margin for the roundings of the keys.
double hot_bound(const ModelSpec &model, double fit, double engagement, Micros t);

// The key to store for a state whose exact engagement key is `exact`, given the one stored (if any):
// the stored one while it still bounds (>= exact) and is not looser than `slack` (a deleted or negative
// event then leaves the indexed value alone, and the state row's update can stay HOT), else the exact
// one. No headroom above it: a key even 2% loose makes the hottest leads read thousands of rows more
// when a million leads have close scores.
double hot_engagement_key_to_store(double exact, std::optional<double> stored, double slack = 0.5);

// A lead found by the threshold algorithm, exactly scored.
struct HotLead {
	double score = 0, fit = 0, engagement = 0;
	std::optional<std::string> stage, grade;
	std::optional<Micros> last_activity;
	std::string lead; // its key, as text
};

// The leads kept so far: the n best (a min-heap by score: a lead replaces the worst kept only if it
// scores strictly more), or without n every lead; with min_score only those scoring at least min_score.
class HotLeads {
public:
	HotLeads(std::optional<int64_t> n, std::optional<double> min_score) : n_(n), min_score_(min_score) {}
	// Whether a lead of this score would be kept now (before its HotLead is built).
	bool wanted(double score) const;
	void offer(HotLead lead);
	// Whether the search may stop once no unread lead can score above `bound` (the bound of the keys last
	// read, hot_bound): n leads are kept and the worst of them reaches it, or min_score is above it.
	bool done(double bound) const;
	// The leads kept, best first (the object is left empty).
	std::vector<HotLead> take_best_first();
	size_t size() const { return hits_.size(); }

private:
	std::optional<int64_t> n_;
	std::optional<double> min_score_;
	std::vector<HotLead> hits_;
};

} // namespace leadscore::core
