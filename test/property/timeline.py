#!/usr/bin/env python3
"""Stage changes caused by time alone, against a reference that replays the timeline minute by minute.

For each seed: a demo CRM (leads with a plan, events with a kind and a time spread from 10 days before to
20 days after now, so that some arrive "in the future"), three models (per-event decay with caps and a
floor; a grace period; no decay with inactivity steps), each with several stages. The rows are written
at the real now (the triggers record the stages then); then leadscore.advance_stages(as_of) runs at random
increasing instants up to 30 days ahead. The recorded changes after the rows were written must equal
those of the reference: an independent Python evaluation of the semantics of docs/concepts.md, scanned minute by
minute, each change then located to the microsecond by bisection. None lost, none twice; times equal
within 1 ms (the reference sums in another order: a crossing instant may differ by a rounding).

Usage: timeline.py [seeds...]   (a server through the PG* variables, leadscore installed; default 1 2)
"""

import argparse
import datetime
import math
import random
import sys
import threading
import time

import psycopg2

US = 1000000
MIN = 60 * US
DAY = 86400 * US
EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)   # PostgreSQL's timestamptz origin

# name -> half_life (days), grace (days), floor, rules [(kind, points, cap)], inactivity [(after days, points)],
# stages [(name, min_score)]
MODELS = {
    'decay': dict(half_life=2.0, grace=None, floor=-20.0,
                  rules=[('demo', 30, None), ('visit', 6, 15), ('unsub', -25, None)],
                  inactivity=[], stages=[('warm', 10), ('hot', 30)]),
    'grace': dict(half_life=3.0, grace=1.5, floor=None,
                  rules=[('demo', 20, None), ('visit', 4, None)],
                  inactivity=[], stages=[('MQL', 15)]),
    'steps': dict(half_life=None, grace=None, floor=None,
                  rules=[('demo', 10, None), ('visit', 2, 8)],
                  inactivity=[(2.0, -6), (5.0, -20)], stages=[('cold', -100), ('lukewarm', 0), ('ok', 8)]),
}
FIT_POINTS = 5          # every model: plan = 'pro' gives 5


def to_us(ts):
    return (ts - EPOCH) // datetime.timedelta(microseconds=1)


def from_us(us):
    return EPOCH + datetime.timedelta(microseconds=us)


def score(model, pro, events, t):
    """events: [(kind, at_us)] of one lead; the score at t (microseconds)."""
    m = MODELS[model]
    past = [(k, at) for k, at in events if at <= t]
    last = max((at for _, at in past), default=None)
    total = FIT_POINTS if pro else 0.0
    hl = m['half_life'] * DAY if m['half_life'] else None
    grace = m['grace'] * DAY if m['grace'] else None
    factor = 1.0
    if hl and grace and last is not None:
        factor = 0.5 ** (max(0, t - last - grace) / hl)
    for kind, points, cap in m['rules']:
        x = 0.0
        for k, at in past:
            if k != kind:
                continue
            x += points * (0.5 ** ((t - at) / hl) if hl and not grace else 1.0)
        x *= factor
        if cap is not None:
            x = max(-cap, min(cap, x))
        total += x
    if last is not None and m['inactivity']:
        reached = [p for after, p in m['inactivity'] if t - last >= after * DAY]
        if reached:
            total += max(((after, p) for after, p in m['inactivity'] if t - last >= after * DAY))[1]
    if m['floor'] is not None:
        total = max(m['floor'], total)
    return total


def stage(model, s):
    best = None
    for name, low in MODELS[model]['stages']:
        if s >= low and (best is None or low > best[1]):
            best = (name, low)
    return best[0] if best else None


def reference_changes(model, pro, events, t0, t1):
    """Every stage change in (t0, t1]: minute scan, then bisection to the first microsecond."""
    out = []
    prev_t, prev = t0, stage(model, score(model, pro, events, t0))
    t = t0
    while t < t1:
        t = min(t + MIN, t1)
        cur = stage(model, score(model, pro, events, t))
        if cur != prev:
            lo, hi = prev_t, t          # stage(lo) == prev, stage(hi) != prev
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if stage(model, score(model, pro, events, mid)) == prev:
                    lo = mid
                else:
                    hi = mid
            out.append((hi, prev, stage(model, score(model, pro, events, hi))))
            prev = out[-1][2]
            # a second change inside the same minute is found from hi on
            t = hi
        prev_t = t
    return out


class Checks:
    """Counts checks; prints each failure with what it was about."""

    def __init__(self, about):
        self.about = about
        self.passed = self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print('FAIL %s: %s' % (self.about, what))


def create(cur, schema):
    """The CRM's two tables in schema and the three models scoring them (named schema_model)."""
    cur.execute('CREATE EXTENSION IF NOT EXISTS leadscore')
    cur.execute('DROP SCHEMA IF EXISTS %s CASCADE' % schema)
    cur.execute('CREATE SCHEMA %s' % schema)
    cur.execute('CREATE TABLE %s.lead (id bigint PRIMARY KEY, plan text)' % schema)
    cur.execute('CREATE TABLE %s.event (lead bigint, kind text, at timestamptz NOT NULL)' % schema)
    cur.execute('CREATE INDEX ON %s.event (lead)' % schema)
    for name, m in MODELS.items():
        mname = '%s_%s' % (schema, name)
        cur.execute('INSERT INTO leadscore.model (name, half_life, grace, floor) VALUES (%s, %s, %s, %s)',
                    (mname, '%g days' % m['half_life'] if m['half_life'] else None,
                     '%g days' % m['grace'] if m['grace'] else None, m['floor']))
        cur.execute('SELECT leadscore.track_leads(%s, %s, %s)', (mname, schema + '.lead', 'id'))
        cur.execute('SELECT leadscore.track_events(%s, %s, %s, %s)', (mname, schema + '.event', 'lead', 'at'))
        cur.execute("INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES (%s, 'pro', %s, "
                    "$$plan = 'pro'$$, %s)", (mname, schema + '.lead', FIT_POINTS))
        for kind, points, cap in m['rules']:
            cur.execute('INSERT INTO leadscore.rule (model, name, source, condition, points, cap) '
                        'VALUES (%s, %s, %s, %s, %s, %s)',
                        (mname, kind, schema + '.event', "kind = '%s'" % kind, points, cap))
        for after, points in m['inactivity']:
            cur.execute('INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES (%s, %s, %s, %s)',
                        (mname, 'quiet %g days' % after, '%g days' % after, points))
        for sname, low in m['stages']:
            cur.execute('INSERT INTO leadscore.stage (model, name, min_score) VALUES (%s, %s, %s)', (mname, sname, low))


def drop(cur, schema):
    for name in MODELS:
        mname = '%s_%s' % (schema, name)
        cur.execute('DELETE FROM leadscore.rule WHERE model = %s', (mname,))
        cur.execute('DELETE FROM leadscore.model WHERE name = %s', (mname,))
    cur.execute('DROP SCHEMA %s CASCADE' % schema)


def run(seed, dsn=''):
    rng = random.Random(seed)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    schema = 'tl%d' % seed
    create(cur, schema)
    cur.execute('SELECT now()')
    now = to_us(cur.fetchone()[0])
    leads = {}
    events = {}
    n_leads = 40
    rows = []
    for lead in range(1, n_leads + 1):
        leads[lead] = rng.random() < 0.4
        events[lead] = []
        for _ in range(rng.choice([0, 1, 2, 3, 5, 8])):
            kind = rng.choices(['demo', 'visit', 'unsub', 'other'], [2, 8, 1, 2])[0]
            at = now + rng.randint(-10 * DAY, 20 * DAY)
            if rng.random() < 0.2:       # events sharing an instant
                at = now + rng.randint(-3, 6) * DAY
            events[lead].append((kind, at))
            rows.append((lead, kind, from_us(at)))
    # The rows, in a few statements (one transaction: one `now` for every trigger).
    cur.execute('BEGIN')
    cur.execute('SELECT now()')
    written = to_us(cur.fetchone()[0])
    cur.executemany('INSERT INTO %s.lead VALUES (%%s, %%s)' % schema,
                    [(lead, 'pro' if pro else 'free') for lead, pro in leads.items()])
    rng.shuffle(rows)
    for i in range(0, len(rows), 17):
        cur.execute('INSERT INTO %s.event VALUES ' % schema + ', '.join(['(%s, %s, %s)'] * len(rows[i:i + 17])),
                    [v for r in rows[i:i + 17] for v in r])
    cur.execute('COMMIT')

    # Scheduled runs at random increasing instants, up to 30 days ahead.
    end = written + 30 * DAY
    times = sorted(rng.randint(written + 1, end) for _ in range(25)) + [end]
    recorded_by_runs = 0
    for t in times:
        cur.execute('SELECT leadscore.advance_stages(%s)', (from_us(t),))
        recorded_by_runs += cur.fetchone()[0]

    checks = Checks('seed %d' % seed)
    check = checks.check

    total_ref = 0
    for name in MODELS:
        mname = '%s_%s' % (schema, name)
        cur.execute('SELECT lead, from_stage, to_stage, changed_at FROM leadscore.stage_changes '
                    'WHERE model = %s AND changed_at > %s ORDER BY lead, changed_at, id', (mname, from_us(written)))
        got = {}
        for lead, f, to, at in cur.fetchall():
            got.setdefault(int(lead), []).append((to_us(at), f, to))
        # The stage each lead was given when the rows were written: the reference must agree.
        cur.execute('SELECT lead::bigint, stage FROM leadscore.scores_at(%s, %s)', (mname, from_us(written)))
        at_write = {int(lead): st for lead, st in cur.fetchall()}
        for lead in leads:
            ref = reference_changes(name, leads[lead], events[lead], written, end)
            total_ref += len(ref)
            mine = got.get(lead, [])
            check(at_write.get(lead) == stage(name, score(name, leads[lead], events[lead], written)),
                  '%s lead %d: stage when written %r, reference %r' % (
                      name, lead, at_write.get(lead), stage(name, score(name, leads[lead], events[lead], written))))
            same = len(ref) == len(mine) and all(
                abs(a[0] - b[0]) <= 1000 and a[1] == b[1] and a[2] == b[2] for a, b in zip(ref, mine))
            check(same, '%s lead %d: recorded %s, reference %s' % (
                name, lead, [(str(from_us(a)), f, t) for a, f, t in mine], [(str(from_us(a)), f, t) for a, f, t in ref]))
    check(recorded_by_runs == total_ref, 'the runs said they recorded %d changes, the reference has %d'
          % (recorded_by_runs, total_ref))
    # Every row is now scheduled after the last run, or never.
    cur.execute('SELECT count(*) FROM leadscore.state_int8 WHERE next_change <= %s', (from_us(end),))
    check(cur.fetchone()[0] == 0, 'state rows still due after the last run')
    # A run again at the same instant records nothing more.
    cur.execute('SELECT leadscore.advance_stages(%s)', (from_us(end),))
    check(cur.fetchone()[0] == 0, 'a second run at the same instant recorded changes')

    drop(cur, schema)
    conn.close()
    print('seed %d: %d leads, %d events, %d runs, %d stage changes by time' % (
        seed, n_leads, len(rows), len(times), total_ref))
    return checks.passed, checks.failed


def run_concurrent(seed, n_leads=2500, sessions=3, dsn=''):
    """Many leads (a run takes them 1,000 rows at a time) and SESSIONS sessions running advance_stages at
    the same instants at once. (No row changes meanwhile: runs at instants ahead of the real time record
    ahead, which only a test may do, and a row change then would record its changes at that instant
    ahead.) Too many leads for the minute scan: the checks are invariants. After the runs at t, every lead's last recorded stage is its exact stage at t
    (none lost); each lead's recorded changes form a chain, each from the stage the one before went to, at
    increasing instants (none twice); and the runs' counts add up to the changes recorded."""
    rng = random.Random(seed)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    schema = 'tlc%d' % seed
    create(cur, schema)
    cur.execute('SELECT now()')
    now = to_us(cur.fetchone()[0])
    cur.execute('INSERT INTO %s.lead SELECT g, CASE WHEN g %% 3 = 0 THEN \'pro\' ELSE \'free\' END '
                'FROM generate_series(1, %d) g' % (schema, n_leads))
    rows = []
    for lead in range(1, n_leads + 1):
        for _ in range(rng.choice([0, 1, 2, 4])):
            kind = rng.choices(['demo', 'visit', 'unsub', 'other'], [2, 8, 1, 2])[0]
            rows.append((lead, kind, from_us(now + rng.randint(-10 * DAY, 5 * DAY))))
    for i in range(0, len(rows), 500):
        cur.execute('INSERT INTO %s.event VALUES ' % schema + ', '.join(['(%s, %s, %s)'] * len(rows[i:i + 500])),
                    [v for r in rows[i:i + 500] for v in r])
    cur.execute('SELECT max(id) FROM leadscore.stage_change_int8')
    first_id = cur.fetchone()[0] or 0

    checks = Checks('concurrent seed %d' % seed)
    check = checks.check

    conns = [psycopg2.connect(dsn) for _ in range(sessions)]
    for c in conns:
        c.autocommit = True
    counts = []
    errors = []

    def advance(c, t):
        try:
            k = c.cursor()
            k.execute('SELECT leadscore.advance_stages(%s)', (from_us(t),))
            counts.append(k.fetchone()[0])
        except Exception as e:     # noqa: BLE001 (reported as a failure)
            errors.append(repr(e))

    t = now
    for step in range(6):
        t += rng.randint(DAY // 4, 3 * DAY)
        threads = [threading.Thread(target=advance, args=(conns[i], t)) for i in range(sessions)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for name in MODELS:
            mname = '%s_%s' % (schema, name)
            cur.execute('SELECT count(*) FROM leadscore.scores_at(%s, %s) s '
                        'LEFT JOIN (SELECT DISTINCT ON (lead) lead, to_stage FROM leadscore.stage_changes '
                        '            WHERE model = %s ORDER BY lead, changed_at DESC, id DESC) c ON c.lead = s.lead '
                        'WHERE s.stage IS DISTINCT FROM c.to_stage', (mname, from_us(t), mname))
            off = cur.fetchone()[0]
            check(off == 0, '%s after the runs at step %d: %d leads whose last recorded stage is not their stage'
                  % (name, step, off))
    check(not errors, 'errors in the sessions: %s' % errors[:3])
    for name in MODELS:
        mname = '%s_%s' % (schema, name)
        cur.execute('SELECT count(*) FROM (SELECT from_stage, lag(to_stage) OVER w AS before, changed_at, '
                    '       lag(changed_at) OVER w AS at_before FROM leadscore.stage_changes WHERE model = %s '
                    '       WINDOW w AS (PARTITION BY lead ORDER BY changed_at, id)) x '
                    'WHERE at_before IS NOT NULL AND (from_stage IS DISTINCT FROM before OR changed_at < at_before)',
                    (mname,))
        broken = cur.fetchone()[0]
        check(broken == 0, '%s: %d recorded changes that do not follow the one before' % (name, broken))
    cur.execute('SELECT count(*) FROM leadscore.stage_change_int8 c JOIN leadscore.model m ON m.id = c.model_id '
                'WHERE c.id > %s AND m.name LIKE %s AND c.changed_at > %s', (first_id, schema + '_%', from_us(now)))
    by_time = cur.fetchone()[0]
    check(by_time == sum(counts), 'the runs said they recorded %d changes, %d are there' % (sum(counts), by_time))
    for c in conns:
        c.close()
    drop(cur, schema)
    conn.close()
    print('concurrent seed %d: %d leads, %d events, %d sessions, runs recorded %d changes' % (
        seed, n_leads, len(rows), sessions, sum(counts)))
    return checks.passed, checks.failed


def run_overlapping(dsn=''):
    """Transactions that began before a scheduled run, or before another transaction's write, and write
    after it: their stage changes must not be dated before what is already recorded (each lead's history in
    order, each change from the stage the one before went to). At the real time: a 2-second half-life.
      lead 1: A begins (tA); time alone takes the lead out of 'hot' at c > tA, a run records it; then A adds
              an event: without care, its change would be dated tA, before c.
      lead 2: A begins (tA); B adds a demo and commits (records NULL -> hot at tB > tA); then A adds an
              unsubscribe, dated tA (B's demo is later than tA): without care, hot -> NULL dated tA < tB;
              then the same with A raising the stage's bound (a recompute) instead."""
    checks = Checks('overlapping transactions')
    check = checks.check
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    schema = 'tlo'
    cur.execute('CREATE EXTENSION IF NOT EXISTS leadscore')
    cur.execute('DROP SCHEMA IF EXISTS %s CASCADE' % schema)
    cur.execute("DELETE FROM leadscore.model WHERE name = 'tlo'")
    cur.execute('CREATE SCHEMA %s' % schema)
    cur.execute('CREATE TABLE tlo.lead (id bigint PRIMARY KEY)')
    cur.execute('CREATE TABLE tlo.event (lead bigint, kind text, at timestamptz NOT NULL DEFAULT now())')
    cur.execute("INSERT INTO leadscore.model (name, half_life) VALUES ('tlo', '2 seconds')")
    cur.execute("SELECT leadscore.track_leads('tlo', 'tlo.lead', 'id'), "
                "leadscore.track_events('tlo', 'tlo.event', 'lead', 'at')")
    cur.execute("INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES "
                "('tlo', 'demo', 'tlo.event', $$kind = 'demo'$$, 20), "
                "('tlo', 'unsub', 'tlo.event', $$kind = 'unsub'$$, -30)")
    cur.execute("INSERT INTO leadscore.stage (model, name, min_score) VALUES ('tlo', 'hot', 10)")
    cur.execute('INSERT INTO tlo.lead VALUES (1), (2)')
    a = psycopg2.connect(dsn)
    b = psycopg2.connect(dsn)
    b.autocommit = True
    ka, kb = a.cursor(), b.cursor()

    cur.execute("INSERT INTO tlo.event (lead, kind) VALUES (1, 'demo')")   # hot until 2 s later
    ka.execute('SELECT now()')                                             # A begins
    time.sleep(2.5)
    kb.execute('SELECT leadscore.advance_stages()')                         # records hot -> NULL at ~2 s
    check(kb.fetchone()[0] >= 1, 'lead 1: the run recorded its change')
    ka.execute("INSERT INTO tlo.event (lead, kind) VALUES (1, 'demo')")    # dated tA, written now
    a.commit()

    ka.execute('SELECT now()')                                             # A begins again
    time.sleep(0.2)
    kb.execute("INSERT INTO tlo.event (lead, kind) VALUES (2, 'demo')")    # NULL -> hot at tB
    ka.execute("INSERT INTO tlo.event (lead, kind) VALUES (2, 'unsub')")   # dated tA < tB
    a.commit()

    ka.execute('SELECT now()')                                             # A begins again
    time.sleep(0.2)
    kb.execute("INSERT INTO tlo.event (lead, kind) VALUES (2, 'demo')")    # NULL -> hot at tB (score >= 10)
    ka.execute("UPDATE leadscore.stage SET min_score = 1000 WHERE model = 'tlo'")  # recompute: hot -> NULL
    a.commit()

    for lead in (1, 2):
        cur.execute("SELECT from_stage, to_stage, changed_at FROM leadscore.stage_changes "
                    "WHERE model = 'tlo' AND lead = %s ORDER BY id", (str(lead),))
        changes = cur.fetchall()
        check(len(changes) >= 2, 'lead %d: changes recorded %r' % (lead, changes))
        for before, after in zip(changes, changes[1:]):
            check(after[2] >= before[2], 'lead %d: %r recorded after %r but dated before it' % (lead, after, before))
            check(after[0] == before[1], 'lead %d: %r does not follow %r' % (lead, after, before))
        cur.execute("SELECT s.stage FROM leadscore.scores s WHERE s.model = 'tlo' AND s.lead = %s", (str(lead),))
        now_stage = cur.fetchone()[0]
        check(changes and changes[-1][1] == now_stage,
              'lead %d: last recorded stage %r, stage now %r' % (lead, changes[-1][1] if changes else None, now_stage))
    a.close()
    b.close()
    cur.execute("DELETE FROM leadscore.rule WHERE model = 'tlo'")
    cur.execute("DELETE FROM leadscore.model WHERE name = 'tlo'")
    cur.execute('DROP SCHEMA tlo CASCADE')
    conn.close()
    print('overlapping transactions: %d checks' % (checks.passed + checks.failed))
    return checks.passed, checks.failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('seeds', nargs='*', type=int, default=[1, 2])
    args = ap.parse_args()
    passed = failed = 0
    for seed in args.seeds:
        p, f = run(seed)
        passed += p
        failed += f
    p, f = run_concurrent(args.seeds[0] if args.seeds else 1)
    passed += p
    failed += f
    p, f = run_overlapping()
    passed += p
    failed += f
    print('%d passed, %d failed' % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
