// leadscore core: lead indexes by integer key, for the work of one statement.
// No PostgreSQL header may be included here or in any file of src/core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace leadscore::core {

// Lead indexes by integer key: open addressing (linear probing) in two flat arrays, at most half full. A
// statement of 200,000 events looks a key up per row, and a node-based map costs a cache miss or two per
// look-up.
class IntKeyIndex {
public:
	// The index of key, or `next` (then recorded as key's) if key is new.
	int find_or_add(int64_t key, int next);
	// The number of keys recorded.
	size_t size() const { return used_; }

private:
	std::vector<int64_t> keys_;
	std::vector<int> values_; // -1: empty slot
	size_t used_ = 0;
};

} // namespace leadscore::core
