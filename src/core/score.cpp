// leadscore core: incremental lead state, decay, caps, categories and bands (see score.h).
#include "score.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

namespace leadscore::core {

namespace {

std::string quoted(const std::string &name)
{
	return "\"" + name + "\"";
}

[[noreturn]] void invalid(const std::string &message)
{
	throw Error(kInvalidParameter, message);
}

double clamp_to(double x, std::optional<double> lo, std::optional<double> hi)
{
	if (lo && x < *lo)
		x = *lo;
	if (hi && x > *hi)
		x = *hi;
	return x;
}

// A cap bounds the size of a total whatever its sign.
double cap_to(double x, std::optional<double> cap)
{
	return cap ? std::clamp(x, -*cap, *cap) : x;
}

// The sign of (a + b) - cap if a + b > cap, of (a + b) + cap if a + b < -cap, else 0, for the exact
// a + b (Knuth's two-sum gives the rounding error of a + b).
int exceeds(double a, double b, double cap)
{
	double s = a + b, bb = s - a, error = (a - (s - bb)) + (b - bb);
	if (s > cap || (s == cap && error > 0))
		return 1;
	if (s < -cap || (s == -cap && error < 0))
		return -1;
	return 0;
}

bool sized_for(const ModelSpec &model, const LeadState &state)
{
	size_t events = model.event_rules.size();
	return state.fit.size() == model.lead_rules.size() && state.n.size() == events && state.w.size() == events &&
	       state.first.size() == events;
}

// Rules and categories share the explain output and the category table: their names must be unique.
void check_rule(const ModelSpec &model, const RuleSpec &rule, bool is_event, std::set<std::string> &names)
{
	std::string what = "rule " + quoted(rule.name) + " of model " + quoted(model.name);
	if (!names.insert(rule.name).second)
		invalid(what + " is defined twice");
	if (!std::isfinite(rule.points))
		invalid(what + ": points must be finite");
	if (rule.cap && !(*rule.cap > 0 && std::isfinite(*rule.cap)))
		invalid(what + ": cap must be positive and finite");
	if (rule.category < -1 || rule.category >= (int) model.categories.size())
		invalid(what + ": category index " + std::to_string(rule.category) + " does not exist");
	if (rule.max_per_period < 0)
		invalid(what + ": max_per_period must be positive");
	if ((rule.max_per_period > 0) != (rule.period != 0))
		invalid(what + ": max_per_period and period go together");
	if (rule.period < 0)
		invalid(what + ": period must be positive");
	if (rule.capped_per_period() && !is_event)
		invalid(what + ": a cap per period applies to event rules only");
	if (rule.capped_per_period() && rule.once_per_lead)
		invalid(what + ": a cap per period and once_per_lead exclude each other");
}

// Inactivity steps appear in explain beside rules: their names differ from every rule's and category's.
void check_inactivity(const ModelSpec &model)
{
	std::set<std::string> taken, names;
	for (const CategorySpec &c : model.categories)
		taken.insert(c.name);
	for (const RuleSpec &rule : model.lead_rules)
		taken.insert(rule.name);
	for (const RuleSpec &rule : model.event_rules)
		taken.insert(rule.name);
	for (size_t i = 0; i < model.inactivity.size(); i++) {
		const InactivityStep &step = model.inactivity[i];
		std::string what = "inactivity rule " + quoted(step.name) + " of model " + quoted(model.name);
		if (!names.insert(step.name).second)
			invalid(what + " is defined twice");
		if (taken.count(step.name))
			invalid(what + ": a rule or category of the model has the same name");
		if (!(step.after > 0))
			invalid(what + ": the interval must be positive");
		if (!std::isfinite(step.points))
			invalid(what + ": points must be finite");
		for (size_t j = 0; j < i; j++)
			if (model.inactivity[j].after == step.after)
				invalid(what + " has the same interval as inactivity rule " + quoted(model.inactivity[j].name));
	}
}

void check_bands(const ModelSpec &model, const std::vector<Band> &bands, const std::string &kind)
{
	std::set<std::string> names;
	for (const Band &band : bands) {
		std::string what = kind + " " + quoted(band.name) + " of model " + quoted(model.name);
		if (!names.insert(band.name).second)
			invalid(what + " is defined twice");
		if (std::isnan(band.min_score) || band.min_score == INFINITY)
			invalid(what + ": min_score must not be NaN or +Infinity");
	}
}

} // namespace

void ModelSpec::validate() const
{
	std::string what = "model " + quoted(name);
	if (half_life && !(std::isfinite(*half_life) && *half_life > 0))
		invalid(what + ": half_life must be positive");
	if ((floor && !std::isfinite(*floor)) || (ceiling && !std::isfinite(*ceiling)))
		invalid(what + ": floor and ceiling must be finite");
	if (floor && ceiling && *floor > *ceiling)
		invalid(what + ": floor is above ceiling");
	if (grace && !(*grace > 0))
		invalid(what + ": grace must be positive");
	if (grace && !half_life)
		invalid(what + ": a grace period needs a half_life");

	std::set<std::string> names;
	for (const CategorySpec &c : categories) {
		std::string cwhat = "category " + quoted(c.name) + " of model " + quoted(name);
		if (!names.insert(c.name).second)
			invalid(cwhat + " is defined twice");
		if (!std::isfinite(c.weight))
			invalid(cwhat + ": weight must be finite");
		if (c.cap && !(*c.cap > 0 && std::isfinite(*c.cap)))
			invalid(cwhat + ": cap must be positive and finite");
	}
	names.clear();
	for (const RuleSpec &rule : lead_rules)
		check_rule(*this, rule, false, names);
	for (const RuleSpec &rule : event_rules)
		check_rule(*this, rule, true, names);
	check_inactivity(*this);

	check_bands(*this, stages, "stage");
	if (std::isnan(stage_exit_margin) || stage_exit_margin < 0)
		invalid(what + ": stage_exit_margin must be 0 or more (Infinity: stages never go down)");
	if (stage_min_time && *stage_min_time <= 0)
		invalid(what + ": stage_min_time must be positive");
	for (const StageHold &h : stage_holds) {
		if (h.exit_margin && (std::isnan(*h.exit_margin) || *h.exit_margin < 0))
			invalid(what + ": stage " + quoted(h.stage) +
			        ": exit_margin must be 0 or more (Infinity: the stage is never left for a lower one)");
		if (h.min_time && *h.min_time <= 0)
			invalid(what + ": stage " + quoted(h.stage) + ": min_time must be positive");
	}
	check_bands(*this, fit_bands, "fit grade band");
	check_bands(*this, engagement_bands, "engagement grade band");
}

void LeadState::reset(const ModelSpec &model)
{
	size_t events = model.event_rules.size();
	fit.assign(model.lead_rules.size(), 0);
	n.assign(events, 0);
	w.assign(events, 0);
	first.assign(events, std::nullopt);
	ref.reset();
	n_events = 0;
	last_activity.reset();
}

double decay(const ModelSpec &model, Micros d)
{
	if (!model.half_life || d <= 0)
		return 1;
	return std::exp2(-(double) d / *model.half_life);
}

int64_t period_bucket(Micros at, Micros period)
{
	Micros d = at - kPeriodEpoch;
	int64_t q = d / period;
	return d % period != 0 && d < 0 ? q - 1 : q;
}

bool apply_event(const ModelSpec &model, LeadState &state, std::optional<Micros> at, const std::vector<bool> &matched,
                 int sign)
{
	size_t rules = model.event_rules.size();
	if (matched.size() != rules || (sign != 1 && sign != -1))
		throw Error(kInternal, "model " + quoted(model.name) + ": event applied with a wrong rule count or sign");
	// w can only hold decaying weights: a weight that never decays would be rescaled with the others.
	if (!at && model.half_life)
		invalid("model " + quoted(model.name) + " decays with time: its events need a time");
	for (size_t r = 0; r < rules; r++)
		if (!at && matched[r] && model.event_rules[r].capped_per_period())
			invalid("rule " + quoted(model.event_rules[r].name) + " of model " + quoted(model.name) +
			        " is capped per period: its events need a time");
	if (!sized_for(model, state))
		state.reset(model);

	// An event before the engagement reset is activity, not engagement: no rule counts it.
	bool counts = !at || !state.reset_at || *at >= *state.reset_at;

	// Refuse an impossible deletion before changing anything.
	if (sign < 0) {
		bool impossible = state.n_events == 0 || (at && !state.ref);
		for (size_t r = 0; r < rules; r++)
			impossible = impossible ||
			             (counts && matched[r] && state.n[r] == 0 && !model.event_rules[r].capped_per_period());
		if (impossible)
			throw Error(kInternal, "model " + quoted(model.name) + ": deleted event is not in the lead's state");
	}

	double weight = 1;
	if (at && sign > 0 && (!state.ref || *at > *state.ref)) {
		// A later event becomes the reference: older weights shrink so that every weight stays <= 1.
		if (model.decays_per_event() && state.ref) {
			double shrink = std::exp2((double) (*state.ref - *at) / *model.half_life);
			for (double &w : state.w)
				w *= shrink;
		}
		state.ref = at;
		state.last_activity = at;
	} else if (at && model.decays_per_event())
		weight = std::exp2((double) (*at - *state.ref) / *model.half_life);

	// The latest activity may lie below ref after a partial rebuild: raise it on its own.
	if (at && sign > 0 && (!state.last_activity || *at > *state.last_activity))
		state.last_activity = at;

	bool rebuild = false;
	state.n_events += sign;
	for (size_t r = 0; r < rules; r++) {
		if (!matched[r] || !counts)
			continue;
		if (model.event_rules[r].capped_per_period()) {
			// Which events of its period count depends on the others: rebuilt (PeriodCapBuild).
			rebuild = true;
			continue;
		}
		state.n[r] += sign;
		if (state.n[r] == 0) {
			// Exactly zero, not a rounding residue.
			state.w[r] = 0;
			state.first[r].reset();
			continue;
		}
		state.w[r] += sign * weight;
		// Deleting more than half of a rule's weight at least doubles the relative rounding error of what
		// remains; a chain of such deletions would lose every digit, so the caller rebuilds. (Never with
		// plain counts: a count that does not reach 0 keeps at least 1.)
		if (sign < 0 && state.w[r] < weight)
			rebuild = true;
		if (sign > 0 && at && (!state.first[r] || *at < *state.first[r]))
			state.first[r] = at;
		if (sign < 0 && at && *at == state.first[r])
			rebuild = true;
	}
	if (state.n_events == 0) {
		state.ref.reset();
		state.last_activity.reset();
	} else if (sign < 0 && at && (at == state.last_activity || *at > *state.ref))
		// The latest activity goes; or an event later than ref goes (a partial rebuild of another table
		// in the same statement already lowered ref): the weights are exact, the latest time is not known.
		rebuild = true;
	return rebuild;
}

void PeriodCapBuild::start(const ModelSpec &model)
{
	rules_.clear();
	for (size_t r = 0; r < model.event_rules.size(); r++)
		if (model.event_rules[r].capped_per_period())
			rules_.push_back(r);
	times_.resize(rules_.size());
	for (std::vector<Micros> &times : times_)
		times.clear();
}

void PeriodCapBuild::add(const ModelSpec &model, std::optional<Micros> at, const std::vector<bool> &matched)
{
	for (size_t i = 0; i < rules_.size(); i++) {
		size_t r = rules_[i];
		if (r >= matched.size() || !matched[r])
			continue;
		if (!at)
			invalid("rule " + quoted(model.event_rules[r].name) + " of model " + quoted(model.name) +
			        " is capped per period: its events need a time");
		times_[i].push_back(*at);
	}
}

void PeriodCapBuild::finish(const ModelSpec &model, LeadState &state, const std::vector<bool> *only)
{
	if (!sized_for(model, state))
		state.reset(model);
	for (size_t i = 0; i < rules_.size(); i++) {
		size_t r = rules_[i];
		if (only && (r >= only->size() || !(*only)[r]))
			continue;
		const RuleSpec &rule = model.event_rules[r];
		std::vector<Micros> &times = times_[i];
		std::sort(times.begin(), times.end());
		int64_t n = 0, bucket = 0, in_bucket = 0;
		double w = 0;
		std::optional<Micros> first;
		for (Micros t : times) {
			if (state.reset_at && t < *state.reset_at)
				continue;
			int64_t b = period_bucket(t, rule.period);
			if (n == 0 || b != bucket) {
				bucket = b;
				in_bucket = 0;
			}
			if (in_bucket == rule.max_per_period)
				continue;
			in_bucket++;
			if (n++ == 0)
				first = t;
			if (model.decays_per_event()) {
				if (!state.ref || t > *state.ref)
					throw Error(kInternal,
					            "model " + quoted(model.name) + ": capped event later than the state's reference time");
				w += std::exp2((double) (t - *state.ref) / *model.half_life);
			} else
				w += 1;
		}
		state.n[r] = n;
		state.w[r] = w;
		state.first[r] = first;
	}
}

void rebase(const ModelSpec &model, LeadState &state, Micros ref)
{
	if (model.decays_per_event() && state.ref && *state.ref != ref) {
		double scale = std::exp2((double) (*state.ref - ref) / *model.half_life);
		for (double &w : state.w)
			w *= scale;
	}
	state.ref = ref;
}

void set_lead(const ModelSpec &model, LeadState &state, const std::vector<double> &fit)
{
	if (fit.size() != model.lead_rules.size())
		throw Error(kInternal, "model " + quoted(model.name) + ": lead row evaluated with a wrong rule count");
	if (!sized_for(model, state))
		state.reset(model);
	state.has_lead = true;
	state.fit = fit;
}

void clear_lead(const ModelSpec &model, LeadState &state)
{
	if (!sized_for(model, state))
		state.reset(model);
	state.has_lead = false;
	std::fill(state.fit.begin(), state.fit.end(), 0);
}

double grace_factor(const ModelSpec &model, const LeadState &state, Micros as_of)
{
	if (!model.grace || !model.half_life || !state.last_activity)
		return 1;
	return decay(model, as_of - *state.last_activity - *model.grace);
}

int inactivity_step(const ModelSpec &model, const LeadState &state, Micros as_of)
{
	if (!state.last_activity)
		return -1;
	Micros idle = as_of - *state.last_activity;
	int best = -1;
	for (size_t i = 0; i < model.inactivity.size(); i++) {
		Micros after = model.inactivity[i].after;
		if (after <= idle && (best < 0 || after > model.inactivity[best].after))
			best = (int) i;
	}
	return best;
}

double decayed_total(const ModelSpec &model, const LeadState &state, size_t r, Micros as_of)
{
	const RuleSpec &rule = model.event_rules[r];
	double total = 0;
	if (state.n[r] > 0 && model.grace && model.half_life)
		// A grace model scales whole totals of counted events (see LeadState).
		total = (rule.once_per_lead ? rule.points : rule.points * state.w[r]) * grace_factor(model, state, as_of);
	else if (state.n[r] > 0 && rule.once_per_lead)
		// Only untimed events: they never decay.
		total = state.first[r] ? rule.points * decay(model, as_of - *state.first[r]) : rule.points;
	else if (state.n[r] > 0)
		total = rule.points * state.w[r] * (state.ref ? decay(model, as_of - *state.ref) : 1);
	if (model.half_life && std::fabs(total) < kNegligible)
		total = std::copysign(0.0, total); // the sign of zero a full underflow would have given
	return total;
}

bool valid_at(const LeadState &state, Micros as_of)
{
	return (!state.last_activity || *state.last_activity <= as_of) && (!state.reset_at || *state.reset_at <= as_of);
}

std::optional<std::string> band_for(const std::vector<Band> &bands, double score)
{
	const Band *best = nullptr;
	for (const Band &band : bands)
		if (band.min_score <= score && (!best || band.min_score >= best->min_score))
			best = &band;
	if (!best)
		return std::nullopt;
	return best->name;
}

bool ModelSpec::stage_has_memory() const
{
	if (stages.empty())
		return false;
	if (stage_exit_margin != 0 || stage_min_time)
		return true;
	for (const StageHold &h : stage_holds)
		if ((h.exit_margin && *h.exit_margin != 0) || h.min_time)
			return true;
	return false;
}

double ModelSpec::margin_of(const Band &band) const
{
	for (const StageHold &h : stage_holds)
		if (h.stage == band.name && h.exit_margin)
			return *h.exit_margin;
	return stage_exit_margin;
}

std::optional<Micros> ModelSpec::min_time_of(const Band &band) const
{
	for (const StageHold &h : stage_holds)
		if (h.stage == band.name && h.min_time)
			return h.min_time;
	return stage_min_time;
}

const Band *ModelSpec::stage_named(const std::optional<std::string> &name) const
{
	if (name)
		for (const Band &band : stages)
			if (band.name == *name)
				return &band;
	return nullptr;
}

std::optional<Micros> min_time_end(const ModelSpec &model, const std::optional<std::string> &stage,
                                   std::optional<Micros> since)
{
	const Band *band = model.stage_named(stage);
	std::optional<Micros> min_time = band ? model.min_time_of(*band) : std::nullopt;
	if (!min_time || !since)
		return std::nullopt;
	Micros most = std::numeric_limits<Micros>::max();
	return *since > most - *min_time ? most : *since + *min_time;
}

bool min_time_holds(const ModelSpec &model, const std::optional<std::string> &stage, std::optional<Micros> since,
                    Micros as_of)
{
	std::optional<Micros> end = min_time_end(model, stage, since);
	return end && as_of < *end;
}

std::optional<std::string> stage_for(const ModelSpec &model, double score, const std::optional<std::string> &previous,
                                     std::optional<Micros> since, Micros as_of)
{
	std::optional<std::string> raw = band_for(model.stages, score);
	if (!model.stage_has_memory() || !previous || raw == previous)
		return raw;
	const Band *was = model.stage_named(previous);
	if (!was)
		return raw;
	// Up (or level): the score's own stage. Down: held by the minimum time in stage, and by the margin, then
	// the stage score + margin reaches (the stage's own, else the model's).
	if (raw)
		for (const Band &band : model.stages)
			if (band.name == *raw && band.min_score >= was->min_score)
				return raw;
	if (min_time_holds(model, previous, since, as_of))
		return previous;
	double lifted = score + model.margin_of(*was); // +infinity with an infinite margin
	if (lifted >= was->min_score)
		return previous;
	return band_for(model.stages, lifted);
}

ScoreResult evaluate(const ModelSpec &model, const LeadState &state, Micros as_of, bool explain)
{
	if (!sized_for(model, state)) {
		// A state nobody has touched yet scores like a reset one; any other mismatch is a stale state.
		if (!state.fit.empty() || !state.n.empty() || !state.w.empty() || !state.first.empty())
			throw Error(kInternal, "model " + quoted(model.name) + ": lead state does not match the model's rules");
		LeadState sized = state;
		sized.reset(model);
		return evaluate(model, sized, as_of, explain);
	}

	std::vector<RuleResult> results;
	for (size_t r = 0; r < model.lead_rules.size(); r++) {
		RuleResult x;
		x.index = (int) r;
		x.hits = state.fit[r] != 0 ? 1 : 0;
		x.raw = x.decayed = model.lead_rules[r].points * state.fit[r];
		results.push_back(x);
	}
	for (size_t r = 0; r < model.event_rules.size(); r++) {
		const RuleSpec &rule = model.event_rules[r];
		RuleResult x;
		x.is_event = true;
		x.index = (int) r;
		x.hits = state.n[r];
		if (state.n[r] > 0)
			x.raw = rule.once_per_lead ? rule.points : rule.points * (double) state.n[r];
		x.decayed = decayed_total(model, state, r, as_of);
		results.push_back(x);
	}

	// Besides the subtotal (rule order, as the shares below have always used), the lead and event parts
	// of each category apart: whether the cap binds is decided on their exact sum (see below).
	size_t categories = model.categories.size();
	std::vector<double> subtotal(categories, 0), lead_subtotal(categories, 0), event_subtotal(categories, 0);
	for (RuleResult &x : results) {
		const RuleSpec &rule = x.is_event ? model.event_rules[x.index] : model.lead_rules[x.index];
		x.capped = cap_to(x.decayed, rule.cap);
		if (rule.category >= 0) {
			subtotal[rule.category] += x.capped;
			(x.is_event ? event_subtotal : lead_subtotal)[rule.category] += x.capped;
		}
	}

	// A category whose cap binds adds exactly weight x cap to the score. Its rules' shares (cap / subtotal
	// each) do not sum to that exactly, and as the subtotal decays they would make a score sitting on a
	// band's bound flicker across it from one microsecond to the next.
	// Whether it binds is decided on the exact sum of its lead and event parts: a subtotal that rounds
	// to the cap while its (tiny, decaying) event part still lies beyond it must not switch formulas
	// back and forth with the roundings of a constant added to that part one rule at a time.
	std::vector<bool> binding(categories, false);
	double bound = 0, unbound_fit = 0, unbound_engagement = 0;
	for (size_t c = 0; c < model.categories.size(); c++) {
		const std::optional<double> &cap = model.categories[c].cap;
		int side = cap ? exceeds(lead_subtotal[c], event_subtotal[c], *cap) : 0;
		if (side != 0) {
			binding[c] = true;
			bound += model.categories[c].weight * (side * *cap);
		}
	}

	ScoreResult result;
	for (RuleResult &x : results) {
		const RuleSpec &rule = x.is_event ? model.event_rules[x.index] : model.lead_rules[x.index];
		x.weighted = x.capped;
		if (rule.category >= 0) {
			// A binding category cap scales every rule of the category alike: fit and engagement keep
			// their proportions of the subtotal.
			const CategorySpec &c = model.categories[rule.category];
			double sub = subtotal[rule.category];
			double share = sub != 0 ? cap_to(sub, c.cap) / sub : 1;
			x.weighted = c.weight * x.capped * share;
		}
		(x.is_event ? result.engagement : result.fit) += x.weighted;
		if (rule.category < 0 || !binding[rule.category])
			(x.is_event ? unbound_engagement : unbound_fit) += x.weighted;
	}

	// Without a binding category cap, nor a step that applies, the score is fit + engagement, as it was
	// before either existed. Engagement totals, tiny long after the events, are summed apart from the
	// constant fit, and added to it at once: the score then rounds monotonically as they decay.
	double total = std::find(binding.begin(), binding.end(), true) != binding.end()
	                   ? (unbound_fit + unbound_engagement) + bound
	                   : result.fit + result.engagement;
	int step = inactivity_step(model, state, as_of);
	if (step >= 0) {
		result.inactivity = model.inactivity[step].points;
		total += result.inactivity;
	}
	result.total = total;
	result.score = clamp_to(total, model.floor, model.ceiling);
	result.stage = stage_for(model, result.score, state.stage, state.stage_since, as_of);
	auto fit_band = band_for(model.fit_bands, result.fit);
	auto engagement_band = band_for(model.engagement_bands, result.engagement);
	if (fit_band && engagement_band)
		result.grade = *fit_band + *engagement_band;
	if (explain) {
		for (size_t i = 0; i < model.inactivity.size(); i++) {
			RuleResult x;
			x.is_inactivity = true;
			x.index = (int) i;
			if ((int) i == step) {
				x.hits = 1;
				x.raw = x.decayed = x.capped = x.weighted = model.inactivity[i].points;
			}
			results.push_back(x);
		}
		result.rules = std::move(results);
	}
	return result;
}

} // namespace leadscore::core
