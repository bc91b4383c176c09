// leadscore core: breakpoints of the score in time and the next stage change (see timeline.h).
//
// Between row changes every rule's total before caps is base x 2^(-max(0, t - tau) / half_life): a
// constant before its tau (the rule's reference time, the end of the grace period) and after it a
// multiple of the same falling exponential. Cut time where a tau is passed, where a rule's total reaches
// its cap, where it becomes negligible (exactly 0), where an inactivity step starts, and, inside each
// resulting piece, where a category subtotal (constant + B x the exponential) reaches its cap: within
// each final piece every term of the score is a constant or a multiple of one common monotone function
// of t, so the score (and the clamp and band of it) is monotone there.
#include "timeline.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace leadscore::core {

namespace {

// One rule's total before its cap.
struct Term {
	double base = 0;
	std::optional<Micros> tau; // none: constant
	std::optional<double> cap;
	int category = -1;
	int event = -1; // index into event_rules, -1 for a lead rule
};

class Timeline {
public:
	Timeline(const ModelSpec &model, const LeadState &state, Micros t0) : model_(model), state_(state), t0_(t0)
	{
		limit_ = kEndOfTime - 1;
		// as_of - t must not overflow in evaluate() for any time t of the state.
		auto guard = [&](std::optional<Micros> t) {
			if (t && *t < 0)
				limit_ = std::min(limit_, std::numeric_limits<Micros>::max() + *t);
		};
		guard(state.ref);
		guard(state.last_activity);
		for (const auto &first : state.first)
			guard(first);
		build_terms();
	}

	std::vector<Micros> breakpoints() const;

private:
	Micros negligible_from(const Term &term) const;
	void build_terms();
	double value(const Term &term, Micros t) const
	{
		if (!term.tau || t <= *term.tau)
			return term.base;
		return term.base * std::exp2(-(double) (t - *term.tau) / *model_.half_life);
	}
	// t + d, saturated at the search limit.
	Micros plus(Micros t, Micros d) const { return t > limit_ - d ? limit_ : t + d; }
	// t + offset, saturated at the search limit.
	Micros later(Micros t, double offset) const
	{
		if (!(offset < (double) (limit_ - t)))
			return limit_;
		return t + (Micros) std::llround(offset);
	}

	const ModelSpec &model_;
	const LeadState &state_;
	Micros t0_, limit_;
	std::vector<Term> terms_;
};

void Timeline::build_terms()
{
	for (size_t r = 0; r < model_.lead_rules.size(); r++) {
		const RuleSpec &rule = model_.lead_rules[r];
		terms_.push_back(Term{rule.points * state_.fit[r], std::nullopt, rule.cap, rule.category});
	}
	const bool grace = model_.grace && model_.half_life;
	for (size_t r = 0; r < model_.event_rules.size(); r++) {
		const RuleSpec &rule = model_.event_rules[r];
		Term term{0, std::nullopt, rule.cap, rule.category, (int) r};
		if (state_.n[r] > 0) {
			term.base = rule.once_per_lead ? rule.points : rule.points * state_.w[r];
			if (grace && state_.last_activity)
				term.tau = plus(*state_.last_activity, *model_.grace);
			else if (model_.decays_per_event())
				term.tau = rule.once_per_lead ? state_.first[r] : state_.ref;
		}
		if (term.base == 0)
			term.tau.reset();
		terms_.push_back(term);
	}
}

// The first instant at which evaluate() counts the term's total as exactly 0 (see kNegligible): the total
// jumps there, so the instant must be exact, not solved in floating point; t0 if it is 0 already.
Micros Timeline::negligible_from(const Term &term) const
{
	auto zero = [&](Micros t) { return decayed_total(model_, state_, term.event, t) == 0; };
	if (zero(t0_))
		return t0_;
	Micros guess = later(*term.tau, *model_.half_life * (std::log2(std::fabs(term.base)) - std::log2(kNegligible)));
	guess = std::max(guess, t0_);
	// Bracket the instant around the guess, then bisect: lo is not yet 0, hi is.
	Micros lo = t0_, hi = limit_;
	for (Micros step = 16; lo == t0_ || hi == limit_; step *= 2) {
		Micros a = std::max(t0_, guess - step), b = later(guess, (double) step);
		if (!zero(a))
			lo = std::max(lo, a);
		if (zero(b))
			hi = std::min(hi, b);
		if (b == limit_ || a == t0_)
			break;
	}
	if (!zero(hi))
		return limit_;
	while (hi - lo > 1) {
		Micros mid = lo + (hi - lo) / 2;
		(zero(mid) ? hi : lo) = mid;
	}
	return hi;
}

std::vector<Micros> Timeline::breakpoints() const
{
	std::vector<Micros> cuts;
	auto add = [&](Micros t) {
		if (t > t0_)
			cuts.push_back(std::min(t, limit_));
	};
	if (state_.last_activity)
		for (const InactivityStep &step : model_.inactivity)
			add(plus(*state_.last_activity, step.after));
	if (model_.grace && model_.half_life && state_.last_activity)
		add(plus(*state_.last_activity, *model_.grace));

	if (model_.half_life) {
		const double half_life = *model_.half_life;
		for (const Term &term : terms_) {
			if (!term.tau)
				continue;
			add(*term.tau);
			add(negligible_from(term));
			if (term.cap && std::fabs(term.base) > *term.cap)
				add(later(*term.tau, half_life * std::log2(std::fabs(term.base) / *term.cap)));
		}

		// Category caps: inside each piece, subtotal = A + B x 2^(-(t - a) / half_life).
		std::vector<Micros> pieces = cuts;
		pieces.push_back(t0_);
		std::sort(pieces.begin(), pieces.end());
		pieces.erase(std::unique(pieces.begin(), pieces.end()), pieces.end());
		for (size_t i = 0; i + 1 < pieces.size(); i++) {
			Micros a = pieces[i], b = pieces[i + 1], mid = a + (b - a) / 2;
			for (size_t c = 0; c < model_.categories.size(); c++) {
				const std::optional<double> &cap = model_.categories[c].cap;
				if (!cap)
					continue;
				double constant = 0, linear = 0;
				for (const Term &term : terms_) {
					if (term.category != (int) c)
						continue;
					double v = value(term, mid);
					if (!term.tau || mid <= *term.tau || (term.cap && std::fabs(v) >= *term.cap))
						constant += term.cap ? std::clamp(v, -*term.cap, *term.cap) : v;
					else
						linear += value(term, a);
				}
				if (linear == 0)
					continue;
				for (double target : {*cap, -*cap}) {
					double v = (target - constant) / linear;
					if (v > 0 && v < 1) {
						Micros t = later(a, half_life * std::log2(1 / v));
						if (t > a && t < b)
							add(t);
					}
				}
			}
		}
	}
	std::sort(cuts.begin(), cuts.end());
	cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
	return cuts;
}

// Runs f with a state sized for the model (an untouched state scores like a reset one, as in evaluate()).
template <typename F>
auto with_sized(const ModelSpec &model, const LeadState &state, Micros t0, F f)
{
	// evaluate() refuses a stale state with its own error.
	(void) evaluate(model, state, t0);
	if (state.fit.size() == model.lead_rules.size() && state.n.size() == model.event_rules.size() &&
	    state.w.size() == model.event_rules.size() && state.first.size() == model.event_rules.size())
		return f(state);
	LeadState sized = state;
	sized.reset(model);
	return f(sized);
}

// Where in (lo, hi) the score first crosses the bound of its band, if the score there is A + B x
// 2^(-(t - lo) / half_life) as between breakpoints of a decaying model (A and B from the two ends).
std::optional<Micros> crossing_guess(const ModelSpec &model, const LeadState &state, Micros lo, Micros hi)
{
	if (!model.half_life || hi - lo < 64)
		return std::nullopt;
	double s_lo = evaluate(model, state, lo).score, s_hi = evaluate(model, state, hi).score;
	double v_hi = std::exp2(-(double) (hi - lo) / *model.half_life);
	if (s_lo == s_hi || v_hi == 1)
		return std::nullopt;
	// Falling, the stage changes under the bound of the band reached at lo; rising, at the next bound.
	std::optional<double> bound;
	for (const Band &band : model.stages) {
		double m = band.min_score;
		if (s_hi < s_lo && m <= s_lo && (!bound || m > *bound))
			bound = m;
		if (s_hi > s_lo && m > s_lo && (!bound || m < *bound))
			bound = m;
	}
	if (!bound || !std::isfinite(*bound))
		return std::nullopt;
	double b = (s_hi - s_lo) / (v_hi - 1), a = s_lo - b;
	double v = (*bound - a) / b;
	if (!(v > v_hi && v < 1))
		return std::nullopt;
	double offset = *model.half_life * std::log2(1 / v);
	if (!(offset > 0 && offset < (double) (hi - lo)))
		return std::nullopt;
	return lo + (Micros) offset;
}

} // namespace

std::vector<Micros> score_breakpoints(const ModelSpec &model, const LeadState &state, Micros t0)
{
	return with_sized(model, state, t0, [&](const LeadState &s) { return Timeline(model, s, t0).breakpoints(); });
}

std::optional<Micros> stage_change_lower_bound(const ModelSpec &model, const LeadState &state, Micros t0, double score)
{
	if (model.stages.empty())
		return std::nullopt;
	double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
	// The stage holds on [lo, hi): its band, or under hysteresis (a stage held above the score's own band)
	// from its min_score - stage_exit_margin up to the next stage's min_score.
	// Within a minimum time in stage the stage cannot go down: not before its end, when it may at once. The
	// stage now was entered at stage_since, or now if it is another than the state's.
	const Band *held = nullptr;
	std::optional<Micros> hold_end;
	if (model.stage_has_memory()) {
		std::optional<std::string> now = stage_for(model, score, state.stage, state.stage_since, t0);
		if (now && now != band_for(model.stages, score))
			held = model.stage_named(now);
		hold_end = min_time_end(model, now, now == state.stage ? state.stage_since : std::optional<Micros>(t0));
	}
	for (const Band &b : model.stages) {
		if (held ? b.min_score <= held->min_score : b.min_score <= score)
			lo = std::max(lo, b.min_score);
		else
			hi = std::min(hi, b.min_score);
	}
	if (held)
		lo = held->min_score - model.margin_of(*held);
	bool time_held = hold_end && t0 < *hold_end;
	if (time_held)
		lo = -std::numeric_limits<double>::infinity();
	// The stage holds while the score falls by no more than score - lo and rises by less than hi - score;
	// a margin keeps the bound early whatever the roundings of evaluate().
	double margin = 1e-9 * std::max(1.0, std::fabs(score));
	double room_down = score - lo - margin, room_up = hi - score - margin;
	std::optional<Micros> bound;
	auto take = [&](Micros t) {
		if (t > t0 && (!bound || t < *bound))
			bound = t;
	};
	if (time_held && *hold_end < kEndOfTime)
		take(*hold_end);
	if (state.last_activity)
		for (const InactivityStep &step : model.inactivity)
			if (*state.last_activity <= kEndOfTime - step.after)
				take(*state.last_activity + step.after);
	if (model.half_life && state.n.size() == model.event_rules.size()) { // (an unsized state has no event)
		// Decay moves every weighted event total towards 0, by at most its size x (1 - 2^(-dt / half_life))
		// (a grace period only delays it): the totals that raise the score can only bring it down, those
		// that lower it only up. Rule caps, category caps, floor and ceiling are monotone and shrink a
		// movement, never turn it around.
		double down = 0, up = 0;
		for (size_t r = 0; r < model.event_rules.size(); r++) {
			int c = model.event_rules[r].category;
			double v = (c >= 0 ? model.categories[c].weight : 1.0) * decayed_total(model, state, r, t0);
			(v > 0 ? down : up) += std::fabs(v);
		}
		auto reach = [&](double amount, double room) {
			if (amount > 0 && room <= 0) {
				take(t0 + 1);
			} else if (amount > room) {
				double dt = -*model.half_life * std::log2(1 - room / amount);
				dt = dt * (1 - 1e-9) - 2;
				Micros step = dt >= 1 ? (Micros) std::min(dt, (double) (kEndOfTime - t0 - 1)) : 1;
				take(t0 + step);
			}
		};
		reach(down, room_down);
		reach(up, room_up);
	}
	return bound;
}

std::optional<Micros> next_stage_change(const ModelSpec &model, const LeadState &state, Micros t0)
{
	if (model.stages.empty())
		return std::nullopt;
	return with_sized(model, state, t0, [&](const LeadState &s) -> std::optional<Micros> {
		auto stage = [&](Micros t) { return evaluate(model, s, t).stage; };
		const std::optional<std::string> before = stage(t0);
		// The first t in (lo, hi] whose stage differs, knowing stage(lo) == before != stage(hi) and
		// that the stage is monotone on [lo, hi]: narrowed around a guess, then bisected. Any t tested
		// keeps [lo, hi] a bracket, so a poor guess costs evaluations, never exactness.
		auto first_change = [&](Micros lo, Micros hi) {
			if (std::optional<Micros> guess = crossing_guess(model, s, lo, hi)) {
				for (Micros d = 16; d < hi - lo; d *= 8) {
					if (*guess - lo > d) {
						Micros t = *guess - d;
						(stage(t) != before ? hi : lo) = t;
					}
					if (hi - *guess > d) {
						Micros t = *guess + d;
						(stage(t) != before ? hi : lo) = t;
					}
					if (hi - lo <= 2 * d)
						break;
				}
			}
			while (hi - lo > 1) {
				Micros mid = lo + (hi - lo) / 2;
				(stage(mid) != before ? hi : lo) = mid;
			}
			return hi;
		};
		// The score is monotone on [a, b) and may jump at b (an inactivity step starts there); the stage may
		// also jump down when a minimum time in stage ends.
		std::vector<Micros> breaks = Timeline(model, s, t0).breakpoints();
		std::optional<Micros> hold_end = min_time_end(model, s.stage, s.stage_since);
		if (hold_end && t0 < *hold_end) {
			Micros end = std::min(*hold_end, kEndOfTime);
			auto at = std::lower_bound(breaks.begin(), breaks.end(), end);
			if (at == breaks.end() || *at != end)
				breaks.insert(at, end);
		}
		Micros a = t0;
		for (Micros b : breaks) {
			if (b - 1 > a && stage(b - 1) != before)
				return first_change(a, b - 1);
			if (stage(b) != before)
				return b;
			a = b;
		}
		return std::nullopt;
	});
}

std::vector<StageChange> stage_changes(const ModelSpec &model, const LeadState &state, Micros t0, Micros t1)
{
	std::vector<StageChange> changes;
	std::optional<std::string> from = evaluate(model, state, t0).stage;
	// Under hysteresis a lead's stage depends on the one it had: each change is searched from the last.
	std::optional<LeadState> moved;
	if (model.stage_has_memory() && from != state.stage) {
		moved = state;
		moved->stage = from;
		moved->stage_since = t0;
	}
	for (Micros t = t0;;) {
		const LeadState &now = moved ? *moved : state;
		std::optional<Micros> next = next_stage_change(model, now, t);
		if (!next || *next > t1)
			break;
		ScoreResult r = evaluate(model, now, *next);
		changes.push_back(StageChange{*next, from, r.stage, r.score});
		from = r.stage;
		t = *next;
		if (model.stage_has_memory()) {
			if (!moved)
				moved = state;
			moved->stage = from;
			moved->stage_since = *next;
		}
	}
	return changes;
}

std::optional<Micros> earliest(std::optional<Micros> a, std::optional<Micros> b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return std::min(*a, *b);
}

std::optional<Micros> next_change_to_store(std::optional<Micros> bound, std::optional<Micros> next_event,
                                           std::optional<Micros> stored, Micros now)
{
	std::optional<Micros> next = earliest(bound, next_event);
	if (stored && *stored > now && (!next || *stored <= *next))
		return stored;
	return next;
}

} // namespace leadscore::core
