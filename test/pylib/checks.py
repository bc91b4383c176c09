"""What the Python client tests share: a connection to the test server, the ok / not ok line of each check
with its count, and the closing "N passed, N failed" line with the exit status (scripts/test.sh reads the
status; the sanitizer suite adds up the closing lines of the property tests).

    sys.path.insert(0, <the folder of this file>)
    import checks
    conn = checks.connect(autocommit=True)           # the server the PG* variables name
    checks.check("what must hold", condition, detail shown when it does not)
    sys.exit(checks.report())                        # the closing line; 1 if a check failed, else 0

A suite of thousands of checks (the property tests) sets `checks.quiet = True`: a check that holds is
then counted without a line of its own; a failing one is always printed, with its detail.
"""
import os
import sys

passed = 0
failed = 0
quiet = False


def connect(user=None, password=None, autocommit=False, driver=None):
    """A new connection to the server that the PG* environment variables name (libpq reads PGHOST, PGPORT,
    PGUSER, PGPASSWORD, PGDATABASE; scripts/with_pg.sh sets them to a throwaway cluster). With `user`,
    as that role with `password`, over TCP (PGHOST, else localhost): a role other than the cluster's
    owner cannot log in through the Unix socket's peer authentication. `driver` is the module to connect
    with: psycopg2 (the default) or psycopg (3)."""
    if driver is None:
        import psycopg2 as driver  # imported here: a suite without a server does not need it
    kw = {}
    if user is not None:
        kw = dict(user=user, password=password, host=os.environ.get("PGHOST", "localhost"))
    if driver.__name__ == "psycopg":
        return driver.connect(autocommit=autocommit, **kw)
    conn = driver.connect(**kw)
    conn.autocommit = autocommit
    return conn


def check(name, cond, detail=None, max_lines=None):
    """Counts one check and prints `ok - name` (unless quiet) or `not ok - name`, then, on a failure, the
    detail as comment lines `#   ...`: a text, a list of texts (one a line), or any value (as str() shows
    it); at most max_lines lines. Returns whether the check holds."""
    global passed, failed
    if cond:
        passed += 1
        if not quiet:
            print(f"ok - {name}", flush=True)
        return True
    failed += 1
    print(f"not ok - {name}")
    if detail is not None:
        if isinstance(detail, (list, tuple)) and all(isinstance(x, str) for x in detail):
            lines = list(detail)
        else:
            lines = str(detail).splitlines()
        for line in lines[:max_lines]:
            print(f"#   {line}")
        if max_lines is not None and len(lines) > max_lines:
            print(f"#   ... and {len(lines) - max_lines} more")
    sys.stdout.flush()
    return False


def report():
    """Prints the closing line `N passed, N failed`; returns the exit status: 1 if a check failed, else 0."""
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0
