// The boundary between PostgreSQL's error handling and C++ exceptions (see pg.h).
#include "pg.h"

#include <cstring>

namespace leadscore::pg {

void fill_error(CppError *err, const char *sqlstate, const char *message) noexcept
{
	strlcpy(err->sqlstate, strlen(sqlstate) == 5 ? sqlstate : "XX000", sizeof(err->sqlstate));
	strlcpy(err->message, message, sizeof(err->message));
}

void raise_error(const CppError *err)
{
	const char *s = err->sqlstate;
	ereport(ERROR, (errcode(MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4])), errmsg("%s", err->message)));
	pg_unreachable();
}

void register_delete(MemoryContext cxt, void (*del)(void *), void *obj)
{
	MemoryContextCallback *cb;

	PG_TRY();
	{
		cb = static_cast<MemoryContextCallback *>(MemoryContextAlloc(cxt, sizeof(MemoryContextCallback)));
	}
	PG_CATCH();
	{
		del(obj);
		PG_RE_THROW();
	}
	PG_END_TRY();
	cb->func = del;
	cb->arg = obj;
	MemoryContextRegisterResetCallback(cxt, cb);
}

void spi_connect()
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "leadscore: SPI_connect failed");
}

} // namespace leadscore::pg
