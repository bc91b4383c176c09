/*
 * Preloaded by test/sanitize/run.sh between libasan and libubsan, into the uninstrumented PostgreSQL
 * server that loads the sanitized leadscore. Two fixes, nothing else changes:
 *
 * 1. postgres would hang at startup. A preloaded libasan runs its constructor after those of every
 *    library the program needs. One of them, libgpg-error (postgres -> libsystemd -> libgcrypt ->
 *    libgpg-error), calls bindtextdomain in its constructor; bindtextdomain mallocs while holding
 *    glibc's gettext lock; that first malloc initializes ASan, whose initialization calls dlerror,
 *    which takes and releases the same lock: the lock is corrupted and the next bindtextdomain
 *    (PostgreSQL's own, in main) waits forever. `LD_PRELOAD=$(gcc -print-file-name=libasan.so)
 *    postgres -V` never returns (gcc 12's libasan.so.8, glibc 2.36, Debian bookworm). So
 *    bindtextdomain and textdomain are interposed here: they initialize ASan (if it is not yet)
 *    before glibc's function takes its lock.
 *
 * 2. UBSan would report without its options (no stack trace). It reads UBSAN_OPTIONS when it first
 *    reports, in a backend, from /proc/self/environ: the memory PostgreSQL has overwritten with the
 *    process title by then (postgres: user db [local] SELECT). __ubsan_default_options, the hook
 *    UBSan reads first, gives it UBSAN_OPTIONS from environ, PostgreSQL's intact copy.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

extern void __asan_init(void) __attribute__((weak));	/* libasan's; initializes ASan once */

static void
init_asan_first(void)
{
	if (__asan_init)
		__asan_init();
}

char *
bindtextdomain(const char *domainname, const char *dirname)
{
	static char *(*real) (const char *, const char *);

	init_asan_first();
	if (!real)
		real = (char *(*) (const char *, const char *)) dlsym(RTLD_NEXT, "bindtextdomain");
	return real(domainname, dirname);
}

char *
textdomain(const char *domainname)
{
	static char *(*real) (const char *);

	init_asan_first();
	if (!real)
		real = (char *(*) (const char *)) dlsym(RTLD_NEXT, "textdomain");
	return real(domainname);
}

const char *
__ubsan_default_options(void)
{
	const char *options = getenv("UBSAN_OPTIONS");

	return options ? options : "";
}
