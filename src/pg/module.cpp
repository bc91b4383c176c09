// The library's entry points outside any feature: its load (_PG_init: the cache's invalidation callbacks,
// the settings) and leadscore._invalidate, which the configuration tables' triggers call.
#include "state.h"

using namespace leadscore::pg;

extern "C" {

PG_MODULE_MAGIC;

PGDLLEXPORT void _PG_init(void);
void _PG_init(void)
{
	init_cache();
	define_direct_state_access();
}

LS_FUNCTION(leadscore_invalidate);
Datum leadscore_invalidate(PG_FUNCTION_ARGS)
{
	invalidate_cache();
	PG_RETURN_VOID();
}

} // extern "C"
