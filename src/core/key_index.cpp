// leadscore core: lead indexes by integer key (see key_index.h).
#include "key_index.h"

#include <utility>

namespace leadscore::core {

int IntKeyIndex::find_or_add(int64_t key, int next)
{
	if (2 * (used_ + 1) > keys_.size()) {
		// Grow to keep the table at most half full, and re-insert.
		std::vector<int64_t> old_keys = std::move(keys_);
		std::vector<int> old_values = std::move(values_);
		size_t size = old_keys.empty() ? 64 : 2 * old_keys.size();
		keys_.assign(size, 0);
		values_.assign(size, -1);
		used_ = 0;
		for (size_t i = 0; i < old_keys.size(); i++)
			if (old_values[i] >= 0)
				find_or_add(old_keys[i], old_values[i]);
	}
	size_t mask = keys_.size() - 1;
	// A 64-bit mix (splitmix64's finaliser): consecutive ids spread over the table.
	uint64_t h = static_cast<uint64_t>(key);
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
	h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
	h ^= h >> 31;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		if (values_[i] < 0) {
			keys_[i] = key;
			values_[i] = next;
			used_++;
			return next;
		}
		if (keys_[i] == key)
			return values_[i];
	}
}

} // namespace leadscore::core
