// leadscore core: lead keys written as text (see key_text.h).
#include "key_text.h"

#include <cstdint>

namespace leadscore::core {

namespace {

bool is_space(char c) noexcept
{
	// isspace() in the C locale, which pg_strtoint32 and pg_strtoint64 skip around the digits.
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

int hex_value(char c) noexcept
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

} // namespace

bool int_key_text_ok(std::string_view text, int bits) noexcept
{
	size_t i = 0, n = text.size();
	while (i < n && is_space(text[i]))
		i++;
	bool negative = false;
	if (i < n && (text[i] == '+' || text[i] == '-'))
		negative = text[i++] == '-';
	// The magnitude, accumulated as unsigned: at most 2^(bits-1) (negative) or 2^(bits-1) - 1.
	uint64_t limit = (uint64_t(1) << (bits - 1)) - (negative ? 0 : 1);
	uint64_t value = 0;
	size_t digits = 0;
	for (; i < n && text[i] >= '0' && text[i] <= '9'; i++, digits++) {
		uint64_t d = uint64_t(text[i] - '0');
		if (value > (limit - d) / 10)
			return false;
		value = value * 10 + d;
	}
	if (digits == 0)
		return false;
	while (i < n && is_space(text[i]))
		i++;
	return i == n;
}

bool uuid_key_text_ok(std::string_view text) noexcept
{
	size_t i = 0, n = text.size();
	bool braces = n > 0 && text[0] == '{';
	if (braces)
		i++;
	for (int byte = 0; byte < 16; byte++) {
		if (i + 2 > n || hex_value(text[i]) < 0 || hex_value(text[i + 1]) < 0)
			return false;
		i += 2;
		if (i < n && text[i] == '-' && byte % 2 == 1 && byte < 15)
			i++;
	}
	if (braces) {
		if (i >= n || text[i] != '}')
			return false;
		i++;
	}
	return i == n;
}

} // namespace leadscore::core
