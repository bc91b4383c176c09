// leadscore core: whether a lead key written as text reads as a key of an integer or uuid type, by the
// rules of PostgreSQL 15's int4in, int8in and uuid_in: a text that passes is accepted by them, one that
// fails would make them raise an error (which a filter of a view must not: it would fail the whole query).
// No PostgreSQL header may be included here or in any file of src/core.
#pragma once

#include <string_view>

namespace leadscore::core {

// Optional spaces, an optional sign, decimal digits, optional spaces; within the range of a signed
// integer of `bits` bits (32 or 64).
bool int_key_text_ok(std::string_view text, int bits) noexcept;
// 32 hexadecimal digits, a hyphen allowed after any group of four, the whole optionally in braces.
bool uuid_key_text_ok(std::string_view text) noexcept;

} // namespace leadscore::core
