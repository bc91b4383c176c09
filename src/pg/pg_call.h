// The other direction of the boundary (pg.h has "PostgreSQL calls C++", ls_cpp): C++ calls PostgreSQL.
// pg_call(f) runs f, a function of PostgreSQL code, under PG_TRY; a PostgreSQL error is copied, flushed and
// thrown as a core::Error carrying its SQLSTATE, so the C++ frames above unwind normally, and the entry
// point's ls_cpp raises it again as a PostgreSQL error. f itself must hold no C++ object with a destructor
// (a longjmp out of it would skip it) and must never throw.
#pragma once

#include "pg.h"

namespace leadscore::pg {

void copy_pg_error(MemoryContext cxt, CppError *err) noexcept;

template <typename F>
bool pg_try(F &f, CppError *err) noexcept
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;
	PG_TRY();
	{
		f();
	}
	PG_CATCH();
	{
		copy_pg_error(cxt, err);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

template <typename F>
void pg_call(F &&f)
{
	CppError err;
	if (!pg_try(f, &err))
		throw core::Error(err.sqlstate, err.message);
}

} // namespace leadscore::pg
