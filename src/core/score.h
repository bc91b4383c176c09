// leadscore core: the scoring semantics (docs/concepts.md) in pure C++17.
// No PostgreSQL header may be included here or in any file of src/core.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace leadscore::core {

// Time is PostgreSQL's TimestampTz representation: microseconds since 2000-01-01 UTC.
using Micros = int64_t;

// Error raised by the core; sqlstate is a five-character SQLSTATE that the glue reports as is.
class Error : public std::runtime_error {
public:
	Error(std::string sqlstate, const std::string &message)
		: std::runtime_error(message), sqlstate_(std::move(sqlstate))
	{}
	const std::string &sqlstate() const noexcept { return sqlstate_; }

private:
	std::string sqlstate_;
};

// SQLSTATEs used by the core.
inline constexpr const char *kInvalidParameter = "22023";
inline constexpr const char *kInternal = "XX000";

struct RuleSpec {
	std::string name;
	double points = 0;          // finite, negative allowed
	std::optional<double> cap;  // > 0: bounds the size of the rule's total
	int category = -1;          // index into ModelSpec::categories, -1 = none (weight 1)
	bool once_per_lead = false; // event rules: only the earliest matching event counts
	// Frequency cap per period (1.2; event rules on timed tables, not with once_per_lead): in each period
	// bucket (see period_bucket) of each lead, only the earliest max_per_period matching events count.
	// 0 = no cap; then period is 0 too.
	int64_t max_per_period = 0;
	Micros period = 0; // > 0 with max_per_period, fixed length in microseconds

	bool capped_per_period() const { return max_per_period > 0; }
};

struct CategorySpec {
	std::string name;
	double weight = 1;         // finite
	std::optional<double> cap; // > 0: bounds the size of the category subtotal
};

// Points applied while the lead's latest activity is at least `after` old. Steps are exclusive: at any
// time only the step with the largest `after` reached applies.
struct InactivityStep {
	std::string name;
	Micros after = 0;  // > 0
	double points = 0; // finite, usually negative
};

struct Band {
	std::string name;
	double min_score = 0; // may be -infinity
};

// A stage's own exit margin and minimum time in stage, in place of the model's (ModelSpec::stage_exit_margin,
// stage_min_time); none: the model's.
struct StageHold {
	std::string stage;
	std::optional<double> exit_margin;
	std::optional<Micros> min_time;
};

struct ModelSpec {
	int id = 0;
	std::string name;
	std::optional<double> half_life; // microseconds, > 0; none = no decay
	// Grace period (microseconds, > 0, only with a half_life): events do not decay one by one; the whole
	// engagement keeps its full value until `grace` after the latest activity, then halves every half_life.
	std::optional<Micros> grace;
	std::optional<double> floor, ceiling;
	std::vector<RuleSpec> lead_rules;  // fit rules, in the order of LeadState::fit
	std::vector<RuleSpec> event_rules; // behaviour rules, in the order of LeadState::n/w/first
	std::vector<CategorySpec> categories;
	std::vector<Band> stages, fit_bands, engagement_bands; // any order
	std::vector<InactivityStep> inactivity;                // any order
	// Stage hysteresis: a lead leaves its stage for a lower one only once its score is more than this
	// below the stage's min_score, and then takes the stage its score + margin reaches (see stage_for).
	// 0: stages follow the score alone; +infinity: stages never go down. >= 0, not NaN.
	double stage_exit_margin = 0;
	// Minimum time in stage (microseconds, > 0; none: no minimum): a lead that entered its stage at
	// LeadState::stage_since goes to a lower stage no earlier than stage_since + stage_min_time (then the stage
	// stage_for gives at that instant). Up is never held. Combines with the margin.
	std::optional<Micros> stage_min_time;
	std::vector<StageHold> stage_holds; // per stage, at most one each (stages without one take the model's)

	// Whether a lead's stage depends on the stage it had (and when it entered it), not on its score alone.
	bool stage_has_memory() const;
	// The exit margin and minimum time in stage that hold a lead in stage `band`: the stage's own, else the
	// model's.
	double margin_of(const Band &band) const;
	std::optional<Micros> min_time_of(const Band &band) const;
	// The stage of that name, or none.
	const Band *stage_named(const std::optional<std::string> &name) const;

	// Throws Error(kInvalidParameter) on non-finite points, caps <= 0, bad category index,
	// half_life <= 0, floor > ceiling, duplicate band names, a grace period <= 0 or without half_life,
	// inactivity steps with after <= 0, non-finite points, the same `after` twice, a name used twice
	// or equal to a rule's or category's name, a period cap that is negative, without a positive period
	// (or a period without it), on a lead rule or with once_per_lead.
	void validate() const;

	// Events decay one by one from their own time: a half_life without grace period.
	bool decays_per_event() const { return half_life && !grace; }
};

// Per (model, lead) state, maintained incrementally. Sizes follow the model's rule lists.
// Engagement weights are kept relative to `ref`: w[r] = sum over matching events of
// 2^((at - ref) / half_life) (without half-life, and with a grace period: the count of events).
// A grace model decays the whole engagement from last_activity + grace, so its weights are plain
// counts like a model without decay; ref is still the latest timed event, last_activity the time the
// grace period (and the inactivity steps) count from. Changing a model's half_life or grace therefore
// changes what w means: the states of that model must be rebuilt (recompute).
struct LeadState {
	bool has_lead = false;                    // a row of the lead table exists for this key
	std::vector<double> fit;                  // per lead rule: 1 when its condition holds, else 0
	std::vector<int64_t> n;                   // per event rule: matching events
	std::vector<double> w;                    // per event rule: decay weights relative to ref
	std::vector<std::optional<Micros>> first; // per event rule: earliest matching timed event
	std::optional<Micros> ref;                // reference time of w (>= every timed event's time)
	int64_t n_events = 0;                     // events of the lead in all tracked event tables
	std::optional<Micros> last_activity;      // latest timed event
	std::optional<std::string> stage;         // stage last recorded (for change detection)
	std::optional<Micros> stage_since;        // when the lead entered `stage` (none: unknown, long ago)
	// Engagement reset (1.2): timed events before this instant do not count in n/w/first (they still
	// count in n_events and last_activity). Kept by reset(); the glue reads it from the state row.
	std::optional<Micros> reset_at;

	// A state with no lead row and no event can be deleted.
	bool empty() const { return !has_lead && n_events == 0; }
	// Sizes the vectors for `model`, zeroing everything but has_lead, stage, stage_since and reset_at.
	void reset(const ModelSpec &model);
};

// Period buckets of frequency caps count from 2000-01-03 00:00 UTC, a Monday: a period of '1 day' makes
// UTC days, '7 days' ISO weeks in UTC.
inline constexpr Micros kPeriodEpoch = 2LL * 86400 * 1000000;
// floor((at - kPeriodEpoch) / period). Precondition: period > 0.
int64_t period_bucket(Micros at, Micros period);

// Applies one event (sign +1 inserted, -1 deleted) to the state. `at` is the event's time
// (none for tables without a time column: such events never decay and do not move
// last_activity). `matched[r]` tells whether event rule r's condition holds for the event.
// Returns true when the state can no longer be maintained exactly by deltas and the caller
// must rebuild it from the lead's events: a deleted event that was the latest activity or
// the earliest match of a once-per-lead rule, while other events remain; or an event (inserted or deleted)
// matching a rule capped per period, which apply_event never counts (its counted events depend on the
// other events of the period: a rebuild collects them with PeriodCapBuild).
// With state.reset_at, a timed event before it counts in n_events and last_activity only.
bool apply_event(const ModelSpec &model, LeadState &state, std::optional<Micros> at, const std::vector<bool> &matched,
                 int sign);

// The part of a from-scratch build (events in any order, each applied with apply_event) that apply_event
// leaves out: the rules capped per period. Collects the times of their matching events, then sets their
// n, w and first: in each (rule, bucket) the earliest max_per_period events at or after state.reset_at
// (ties in time: any of them, the totals are the same), w relative to state.ref as apply_event keeps it.
// Memory: one time per matching event of a capped rule, until finish.
class PeriodCapBuild {
public:
	// Forgets what was collected; `model` is the model of the following calls.
	void start(const ModelSpec &model);
	// Whether the model has rules capped per period (else add and finish do nothing).
	bool any() const { return !rules_.empty(); }
	// One event, as passed to apply_event with sign +1. Throws on a matching event without a time.
	void add(const ModelSpec &model, std::optional<Micros> at, const std::vector<bool> &matched);
	// Sets n, w and first of the capped rules, all of them or those with only[r] true; call it once every
	// event is applied (state.ref final) and state.reset_at set.
	void finish(const ModelSpec &model, LeadState &state, const std::vector<bool> *only = nullptr);

private:
	std::vector<size_t> rules_;              // indexes of the capped event rules
	std::vector<std::vector<Micros>> times_; // per capped rule: times of its matching events
};

// Moves the reference time of the decay weights to `ref` (exact: a multiplication), e.g. down to the
// latest remaining event after a partial rebuild. Every timed event must be at or before `ref`.
void rebase(const ModelSpec &model, LeadState &state, Micros ref);

// Sets (present) or clears (absent) the lead row's fit values.
void set_lead(const ModelSpec &model, LeadState &state, const std::vector<double> &fit);
void clear_lead(const ModelSpec &model, LeadState &state);

// 2^(-d / half_life), 1 without half-life or for d <= 0.
double decay(const ModelSpec &model, Micros d);

// A decayed event rule total smaller than this (some 600 half-lives old) counts as exactly 0: on its way
// to 0 it would otherwise pass through subnormal numbers, whose coarse steps make a sum of such totals
// of both signs jitter around 0 (and a stage bound at the score's limit flicker) from one microsecond
// to the next.
inline constexpr double kNegligible = 0x1p-600;

// Event rule r's total at as_of after decay (and the grace factor), before its cap: the `decayed` of
// evaluate()'s explain. Precondition: valid_at(state, as_of), state sized for the model.
double decayed_total(const ModelSpec &model, const LeadState &state, size_t r, Micros as_of);

// Grace models: the factor applied to every event rule's total at as_of, 2^(-(as_of - L - grace) /
// half_life) for as_of > L + grace, else 1, with L = last_activity (1 without activity). 1 for other
// models. Precondition: valid_at(state, as_of).
double grace_factor(const ModelSpec &model, const LeadState &state, Micros as_of);

// Index into model.inactivity of the step that applies at as_of: the largest `after` with
// as_of - last_activity >= after; -1 when none does or the lead has no timed activity.
// Precondition: valid_at(state, as_of).
int inactivity_step(const ModelSpec &model, const LeadState &state, Micros as_of);

struct RuleResult {
	bool is_event = false;
	bool is_inactivity = false; // an inactivity step: index is into ModelSpec::inactivity, is_event false
	int index = 0;              // into lead_rules, event_rules or inactivity
	int64_t hits = 0;           // lead rules: 1 if the condition holds; inactivity steps: 1 if it applies
	double raw = 0;             // points x hits, before decay and caps
	double decayed = 0;         // after decay (= raw for lead rules)
	double capped = 0;          // after the rule's cap
	double weighted = 0;        // share of the score: category weight x share of the capped category
};

struct ScoreResult {
	double score = 0;      // clamp(fit + engagement + inactivity, floor, ceiling)
	double fit = 0;        // weighted contributions of lead rules
	double engagement = 0; // weighted contributions of event rules (after the grace factor)
	double inactivity = 0; // points of the inactivity step that applies, 0 if none
	// What floor and ceiling clamp: fit + engagement + inactivity, except that a category whose cap binds
	// counts as exactly weight x cap (its rules' weighted shares may differ from that in the last bit).
	double total = 0;
	std::optional<std::string> stage, grade; // grade = fit band name + engagement band name
	// Filled when explain is true: every lead rule, then every event rule, then every inactivity step
	// (in the order of ModelSpec::inactivity, hits 1 for the one that applies, else 0 and all values 0).
	// The weighted values sum to `total` (to rounding).
	std::vector<RuleResult> rules;
};

// True when `state` holds every event that counts at as_of, i.e. no timed event is later
// than as_of, and no engagement reset is later than as_of; otherwise the caller must build a state from
// the events with at <= as_of (and the reset that applies at as_of).
bool valid_at(const LeadState &state, Micros as_of);

// Score at as_of. Precondition: valid_at(state, as_of).
ScoreResult evaluate(const ModelSpec &model, const LeadState &state, Micros as_of, bool explain = false);

// The highest band whose min_score the score reaches, none if no band is reached.
std::optional<std::string> band_for(const std::vector<Band> &bands, double score);

// The stage of a lead whose stage was `previous` and whose score is `score`: band_for(stages, score) when
// that is `previous` or higher (by min_score), or when `previous` is none or no stage of the model;
// otherwise (the score fell below previous's min_score) `previous` while score + stage_exit_margin still
// reaches its min_score, else the stage score + stage_exit_margin reaches. With a margin of 0, band_for.
// Under a minimum time in stage, a lower stage than `previous` is taken only at or after since +
// stage_min_time (as_of: the instant the stage is of; since: when the lead entered `previous`, none: long
// ago). Monotone in score for a given previous, since and as_of, which next_stage_change's search relies on.
std::optional<std::string> stage_for(const ModelSpec &model, double score, const std::optional<std::string> &previous,
                                     std::optional<Micros> since = std::nullopt, Micros as_of = 0);
// When the minimum time in stage ends for a lead that entered `stage` at `since` (none: no minimum for that
// stage, no such stage, or since unknown; saturated at the largest Micros), and whether it still holds the
// lead at as_of.
std::optional<Micros> min_time_end(const ModelSpec &model, const std::optional<std::string> &stage,
                                   std::optional<Micros> since);
bool min_time_holds(const ModelSpec &model, const std::optional<std::string> &stage, std::optional<Micros> since,
                    Micros as_of);

} // namespace leadscore::core
