#!/usr/bin/python3
"""Trained models across sessions: concurrent trainings of one model take distinct versions; a session that
cached a model predicts with a retrained one as soon as the retraining commits, and not before; a rolled-back
training leaves every cache as it was. Run under scripts/with_pg.sh. Prints ok / not ok and "N passed, N failed"."""
import os
import sys
import threading

import psycopg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'pylib'))
import checks  # noqa: E402
from checks import check  # noqa: E402


def connect(autocommit=False):
    return checks.connect(autocommit=autocommit, driver=psycopg)


def one(conn, sql, params=()):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def main():
    with connect(autocommit=True) as setup:
        setup.execute('DROP EXTENSION IF EXISTS leadscore CASCADE')
        setup.execute('CREATE EXTENSION leadscore')
        setup.execute('DROP TABLE IF EXISTS sessions_hist')
        setup.execute("SELECT setseed(0.2)")
        setup.execute("CREATE TABLE sessions_hist AS SELECT g AS id, random() AS x, random() < 0.4 AS converted "
                      "FROM generate_series(1, 100000) g")

    # Four sessions train the same model at once.
    versions = []

    def train():
        with connect(autocommit=True) as c:
            versions.append(one(c, "SELECT version FROM leadscore.train('m', 'SELECT x, converted FROM sessions_hist')"))
    threads = [threading.Thread(target=train) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check('four concurrent trainings of one model get versions 1 to 4', sorted(versions) == [1, 2, 3, 4], versions)

    probe = "SELECT leadscore.predict('m', r) FROM (SELECT 0.5::float8 AS x, 1 AS y) r"
    with connect(autocommit=True) as a, connect() as b:
        before = one(a, probe)  # session a caches version 4
        # b retrains on other rows (a different model), uncommitted: a still predicts with version 4.
        one(b, "SELECT version FROM leadscore.train('m', 'SELECT x, x > 0.5 AS converted FROM sessions_hist')")
        during = one(a, probe)
        inside = one(b, probe)
        check('an uncommitted retraining is not seen by another session', during == before)
        check('the retraining session predicts with its new version at once', inside != before)
        b.rollback()
        check('a rolled-back retraining leaves the other session as it was', one(a, probe) == before)
        check('a rolled-back retraining leaves its own session on the previous version', one(b, probe) == before)
        one(b, "SELECT version FROM leadscore.train('m', 'SELECT x, x > 0.5 AS converted FROM sessions_hist')")
        b.commit()
        after = one(a, probe)
        check('a committed retraining is used by the other session at its next statement', after == inside,
              f'{after} vs {inside}')
        b.execute("DELETE FROM leadscore.predictive_model WHERE name = 'm' AND version = 5")
        b.commit()
        check('deleting the latest version sends every session back to the previous one', one(a, probe) == before)

    # The cache is filled from what is committed, not from an older snapshot of the session that reloads it:
    # a repeatable-read transaction open across a retraining must not leave the old version cached after it.
    with connect() as a, connect() as b:
        a.execute('BEGIN ISOLATION LEVEL REPEATABLE READ')
        old = one(a, probe)
        one(b, "SELECT version FROM leadscore.train('m', 'SELECT x, x > 0.5 AS converted FROM sessions_hist')")
        b.commit()
        new = one(b, probe)
        one(a, probe)
        a.commit()
        check('after a repeatable-read transaction open across a retraining, the session uses the new version',
              one(a, probe) == new and new != old)

    with connect(autocommit=True) as setup:
        setup.execute('DROP TABLE sessions_hist')
    return checks.report()


if __name__ == '__main__':
    sys.exit(main())
