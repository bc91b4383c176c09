// The one place where PostgreSQL's headers enter leadscore's C++ glue. Files of src/core never include this.
//
// The rules of the boundary: a PostgreSQL error longjmps, so a frame that may
// raise one holds no C++ object with a destructor; C++ work runs inside ls_cpp(), which catches every
// exception and raises it as a PostgreSQL error after the C++ frames are gone. C++ objects that live
// across PostgreSQL calls are owned by a memory context (ls_owned), so an error frees them too.
#pragma once

// PostgreSQL 15 exports nothing explicitly; we build with -fvisibility=hidden and export the
// entry points (PG_FUNCTION_INFO_V1, PG_MODULE_MAGIC, _PG_init) by defining PGDLLEXPORT first.
#define PGDLLEXPORT __attribute__((visibility("default")))

extern "C" {
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"
}

#include <exception>
#include <new>
#include <type_traits>

#include "../core/score.h"

// A SQL-callable function. PostgreSQL 15's PG_FUNCTION_INFO_V1 exports the info record but not the
// function, which -fvisibility=hidden would hide: export both.
#define LS_FUNCTION(name)                                                                                              \
	PG_FUNCTION_INFO_V1(name);                                                                                         \
	PGDLLEXPORT Datum name(PG_FUNCTION_ARGS)

namespace leadscore::pg {

// What a C++ exception leaves behind once caught: plain data, safe to carry across ereport.
struct CppError {
	char sqlstate[6];
	char message[1024];
};

void fill_error(CppError *err, const char *sqlstate, const char *message) noexcept;
[[noreturn]] void raise_error(const CppError *err);

// PostgreSQL calls C++: runs f, and raises any exception it throws as a PostgreSQL ERROR once the
// C++ frames are unwound. f must not call anything that can raise a PostgreSQL error.
template <typename F>
bool try_cpp(F &&f, CppError *err) noexcept
{
	// The lambda object lives in the caller's frame, which may raise a PostgreSQL error: it must hold
	// nothing with a destructor (a capture by value of a std::string would leak on a longjmp).
	static_assert(std::is_trivially_destructible_v<std::remove_reference_t<F>>,
	              "a guarded lambda must capture nothing with a destructor (capture by reference)");
	try {
		f();
		return true;
	} catch (const core::Error &e) {
		fill_error(err, e.sqlstate().c_str(), e.what());
	} catch (const std::bad_alloc &) {
		fill_error(err, "53200", "out of memory");
	} catch (const std::exception &e) {
		fill_error(err, "XX000", e.what());
	} catch (...) {
		fill_error(err, "XX000", "unknown C++ exception");
	}
	return false;
}

template <typename F>
void ls_cpp(F &&f)
{
	CppError err;
	if (!try_cpp(f, &err))
		raise_error(&err);
}

// SPI_connect, or an error.
void spi_connect();

// A long operation (recompute, a configuration change, train, snapshot, refresh_rfm) says what it does in
// NOTICEs once it reads this many rows or more: what it will read when it knows, every kProgressEvery rows
// read, and what it did.
inline constexpr int64 kProgressRows = 100000;
inline constexpr int64 kProgressEvery = 1000000;

// A C++ object owned by a memory context: deleted when the context is reset or deleted, on error too.
void register_delete(MemoryContext cxt, void (*del)(void *), void *obj);

template <typename T>
T *ls_owned(MemoryContext cxt)
{
	T *obj = nullptr;
	ls_cpp([&] { obj = new T(); });
	register_delete(
		cxt, [](void *p) { delete static_cast<T *>(p); }, obj);
	return obj;
}

} // namespace leadscore::pg
