// leadscore core: how a lead's score and stage move with time alone, between row changes.
// No PostgreSQL header may be included here or in any file of src/core.
#pragma once

#include "score.h"

#include <optional>
#include <string>
#include <vector>

namespace leadscore::core {

// PostgreSQL's END_TIMESTAMP (294277-01-01 00:00 UTC): no finite timestamptz reaches it. Searches stop
// before it.
inline constexpr Micros kEndOfTime = 9223371331200000000LL;

// The instants after t0 (sorted, distinct, each > t0) between which the score of `state` is monotone in
// time, assuming no row changes after t0: on [b_i, b_{i+1}) (and [t0, b_0)) the score never turns back.
// They are the inactivity step times (last_activity + after), the end of the grace period, the instants
// where a capped rule's decayed total reaches its cap and where a capped category subtotal reaches its
// cap, and where a decayed total becomes negligible (exactly 0, see kNegligible); after the last one the
// score is constant. Empty when the score never changes after t0.
// Cap crossings are solved in double precision: they may be a few microseconds off the exact instant.
// Precondition: valid_at(state, t0).
std::vector<Micros> score_breakpoints(const ModelSpec &model, const LeadState &state, Micros t0);

// The first instant t > t0 at which evaluate(model, state, t).stage differs from evaluate(model, state,
// t0).stage, assuming no row changes after t0; none if the stage never changes again (or the model has no
// stages). Exact with respect to evaluate(): at the returned t the new stage is read, at t - 1 the stage
// of t0. Between breakpoints the stage is found by bisection on evaluate() itself.
// Precondition: valid_at(state, t0).
std::optional<Micros> next_stage_change(const ModelSpec &model, const LeadState &state, Micros t0);

// A cheap lower bound of next_stage_change (some 0.1 us against several): an instant t > t0 at or before
// which the first stage change after t0 cannot come, or none if the stage never changes. Decay moves every
// weighted rule total towards 0: it brings the score down by at most D x (1 - 2^(-(t - t0) / half_life)),
// D the sum of the category weight x decayed rule totals at t0 that are positive, and up by at most U x
// the same, U the sum of the sizes of the negative ones (caps, category caps, floor and ceiling only
// shrink a movement; a grace period only delays it), so the stage holds until either reaches the
// distance to its band's edge on its side (a lead whose engagement only adds points is never woken to
// rise); an inactivity step may jump at its own instant. What the live trigger stores: the scheduled run then finds the exact changes
// from there. `score` is evaluate(model, state, t0).score, which the caller has at hand.
// Precondition: valid_at(state, t0).
std::optional<Micros> stage_change_lower_bound(const ModelSpec &model, const LeadState &state, Micros t0, double score);

// The earlier of two instants, either of which may be none (never).
std::optional<Micros> earliest(std::optional<Micros> a, std::optional<Micros> b);

// The next_change to store for a state row written at `now` (the live trigger): when time alone may next
// change the lead's stage, or a future-dated event of the lead arrive (`next_event`), from `bound` (a
// stage_change_lower_bound at now). A stored instant (`stored`: none for a new row) still after now and at
// or before that stays as it is: the indexed column does not change and the row's update can stay HOT; the
// scheduled run computes the exact instants when it wakes the lead.
std::optional<Micros> next_change_to_store(std::optional<Micros> bound, std::optional<Micros> next_event,
                                           std::optional<Micros> stored, Micros now);

struct StageChange {
	Micros at = 0;                       // the instant of the change (see next_stage_change)
	std::optional<std::string> from, to; // stages just before and at `at`
	double score = 0;                    // score at `at`
};

// Every stage change in (t0, t1], in time order, assuming no row changes after t0: what a scheduled run
// that last looked at t0 must record at t1. Precondition: valid_at(state, t0).
std::vector<StageChange> stage_changes(const ModelSpec &model, const LeadState &state, Micros t0, Micros t1);

} // namespace leadscore::core
