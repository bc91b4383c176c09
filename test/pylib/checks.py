"""The ok / not ok lines of the Python test suites and their closing "N passed, N failed" line.

    from checks import check, finish   (with test/pylib on sys.path)
    check("what must hold", condition, detail_shown_when_it_does_not)
    finish()                            prints the closing line, exits non-zero if a check failed
"""
import sys

passed = 0
failed = 0


def check(name, cond, detail=None):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"not ok - {name}")
        if detail is not None:
            for line in str(detail).splitlines():
                print(f"#   {line}")
    return bool(cond)


def finish():
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
