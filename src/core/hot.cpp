// leadscore core: the hottest-leads keys (see hot.h).
#include "hot.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace leadscore::core {

namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// |weight| and the sign a rule's points must have to raise the score, for a rule of `category`.
double category_weight(const ModelSpec &model, int category)
{
	return category >= 0 ? model.categories[category].weight : 1.0;
}

// The part of `value` (points x hits) that raises the score through a rule of `category`: >= 0.
double raising_part(const ModelSpec &model, int category, double value)
{
	double weight = category_weight(model, category);
	return std::fabs(weight) * std::max(0.0, std::copysign(1.0, weight) * value);
}

} // namespace

HotKeys hot_keys(const ModelSpec &model, const LeadState &state)
{
	HotKeys keys;
	bool sized = state.fit.size() == model.lead_rules.size() && state.n.size() == model.event_rules.size() &&
	             state.w.size() == model.event_rules.size() && state.first.size() == model.event_rules.size();

	double fit = 0;
	for (size_t r = 0; sized && r < model.lead_rules.size(); r++) {
		const RuleSpec &rule = model.lead_rules[r];
		double value = rule.points * state.fit[r];
		if (rule.cap)
			value = std::clamp(value, -*rule.cap, *rule.cap);
		fit += raising_part(model, rule.category, value);
	}
	double step = 0;
	for (const InactivityStep &s : model.inactivity)
		step = std::max(step, s.points);
	keys.fit = fit + step;

	// Each event rule's total at the time its weights refer to, before its cap (see decayed_total).
	double engagement = 0;
	for (size_t r = 0; sized && r < model.event_rules.size(); r++) {
		if (state.n[r] <= 0)
			continue;
		const RuleSpec &rule = model.event_rules[r];
		double total;
		if (rule.once_per_lead && !(model.grace && model.half_life))
			total = rule.points * (state.first[r] && state.ref && model.half_life
			                           ? std::exp2((double) (*state.first[r] - *state.ref) / *model.half_life)
			                           : 1.0);
		else
			total = rule.once_per_lead ? rule.points : rule.points * state.w[r];
		engagement += raising_part(model, rule.category, total);
	}
	if (!(engagement > 0)) {
		keys.engagement = -kInfinity;
		return keys;
	}
	keys.engagement = std::log2(engagement);
	if (model.half_life) {
		// The time the stored totals are worth `engagement`: ref, or the end of a grace period.
		std::optional<Micros> at = model.grace ? state.last_activity : state.ref;
		if (at)
			keys.engagement += (double) (*at + (model.grace ? *model.grace : 0)) / *model.half_life;
		else
			// Only untimed events (which a decaying model refuses): never decays.
			keys.engagement = kInfinity;
	}
	return keys;
}

double hot_bound(const ModelSpec &model, double fit, double engagement, Micros t)
{
	if (std::isinf(fit) && fit > 0)
		return kInfinity;
	if (std::isinf(engagement) && engagement > 0)
		return kInfinity;
	double exponent = engagement - (model.half_life ? (double) t / *model.half_life : 0.0);
	double bound = (fit + std::exp2(exponent)) * (1 + 1e-9) + 1e-300;
	if (model.ceiling)
		bound = std::min(bound, *model.ceiling);
	if (model.floor)
		bound = std::max(bound, *model.floor);
	return bound;
}

double hot_engagement_key_to_store(double exact, std::optional<double> stored, double slack)
{
	if (std::isinf(exact))
		return exact;
	if (stored && *stored >= exact && *stored - exact <= slack)
		return *stored;
	return exact;
}

namespace {
bool worse(const HotLead &a, const HotLead &b)
{
	return a.score > b.score;
}
} // namespace

bool HotLeads::wanted(double score) const
{
	if (min_score_ && !(score >= *min_score_))
		return false;
	if (n_ && *n_ <= 0)
		return false;
	return !(n_ && (int64_t) hits_.size() == *n_ && !(score > hits_.front().score));
}

void HotLeads::offer(HotLead lead)
{
	if (!wanted(lead.score))
		return;
	if (n_ && (int64_t) hits_.size() == *n_) {
		std::pop_heap(hits_.begin(), hits_.end(), worse);
		hits_.pop_back();
	}
	hits_.push_back(std::move(lead));
	if (n_)
		std::push_heap(hits_.begin(), hits_.end(), worse);
}

bool HotLeads::done(double bound) const
{
	if (min_score_ && bound < *min_score_)
		return true;
	return n_ && (int64_t) hits_.size() == *n_ && hits_.front().score >= bound;
}

std::vector<HotLead> HotLeads::take_best_first()
{
	std::vector<HotLead> best = std::move(hits_);
	hits_.clear();
	std::sort(best.begin(), best.end(), worse);
	return best;
}

} // namespace leadscore::core
