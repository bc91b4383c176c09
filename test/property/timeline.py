#!/usr/bin/env python3
"""Stage changes caused by time alone, against a reference that replays the timeline minute by minute.

For each seed: a demo CRM (leads with a plan, events with a kind and a time spread from 10 days before to
20 days after now, so that some arrive "in the future"), three models (per-event decay with caps and a
floor; a grace period; no decay with inactivity steps), each with several stages. The rows are written
at the real now (the triggers record the stages then); then leadscore.advance_stages(as_of) runs at random
increasing instants up to 30 days ahead. The recorded changes after the rows were written must equal
those of the reference: the stage of each lead as the independent Python reference of the semantics
(lsref.py, which exactness.py checks every score against) gives it, replayed minute by minute, each change
then located to the microsecond by bisection. None lost, none twice; times equal within 1 ms (the
reference sums in another order: a crossing instant may differ by a rounding).

Usage: timeline.py [seeds...]   (a server through the PG* variables, leadscore installed; default 1 2)
Prints the failing checks (not ok - ...) and a line per part, then "N passed, N failed"; exit status 1 on
any failure.
"""

import argparse
import os
import random
import sys
import threading
import time

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'pylib'))
import checks  # noqa: E402
import lsref  # noqa: E402
from lsref import US_PER_DAY as DAY, rule, us_to_dt, dt_to_us  # noqa: E402

US = 1000000
MIN = 60 * US
FIT_POINTS = 5          # every model: plan = 'pro' gives 5


def timeline_models(schema):
    """The three models of the CRM in `schema` (named schema_decay, schema_grace, schema_steps), as the
    shared reference (lsref) defines and installs them: each gives FIT_POINTS to a lead whose plan is 'pro',
    and scores the events of its table by their kind."""
    def model(name, half_life, floor, rules, stages, grace=None, inactivity=()):
        return lsref.Model('%s_%s' % (schema, name), schema, half_life, floor, None, 'lead', 'id', 'bigint',
                           [('event', 'lead', 'at')], {},
                           [rule('pro', 'lead', "plan = 'pro'", FIT_POINTS)] +
                           [rule(kind, 'event', "kind = '%s'" % kind, points, cap=cap) for kind, points, cap in rules],
                           stages, grace_days=grace, inactivity=inactivity)
    return {
        # per-event decay (half-life 2 days), a capped rule, a negative one, a floor
        'decay': model('decay', 2.0, -20.0, [('demo', 30, None), ('visit', 6, 15.0), ('unsub', -25, None)],
                       [('warm', 10.0), ('hot', 30.0)]),
        # a grace period: full value until 1.5 days after the last event, then halving every 3 days
        'grace': model('grace', 3.0, None, [('demo', 20, None), ('visit', 4, None)], [('MQL', 15.0)], grace=1.5),
        # no decay; inactivity steps (-6 after 2 quiet days, -20 after 5)
        'steps': model('steps', None, None, [('demo', 10, None), ('visit', 2, 8.0)],
                       [('cold', -100.0), ('lukewarm', 0.0), ('ok', 8.0)],
                       inactivity=[('quiet 2 days', 2.0, -6), ('quiet 5 days', 5.0, -20)]),
        # stage hysteresis (MARGINS): 'decay' leaving a stage only 8 points below it; 'steps' never going down
        'held': model('held', 2.0, -20.0, [('demo', 30, None), ('visit', 6, 15.0), ('unsub', -25, None)],
                      [('warm', 10.0), ('hot', 30.0)]),
        'never': model('never', None, None, [('demo', 10, None), ('visit', 2, 8.0)],
                       [('cold', -100.0), ('lukewarm', 0.0), ('ok', 8.0)],
                       inactivity=[('quiet 2 days', 2.0, -6), ('quiet 5 days', 5.0, -20)]),
        # a minimum time in stage (MIN_TIMES): 'decay' held a day in each stage it enters; 'steps' with a
        # margin of 4 and a day and a half
        'minimum': model('minimum', 2.0, -20.0, [('demo', 30, None), ('visit', 6, 15.0), ('unsub', -25, None)],
                         [('warm', 10.0), ('hot', 30.0)]),
        'both': model('both', None, None, [('demo', 10, None), ('visit', 2, 8.0)],
                      [('cold', -100.0), ('lukewarm', 0.0), ('ok', 8.0)],
                      inactivity=[('quiet 2 days', 2.0, -6), ('quiet 5 days', 5.0, -20)]),
    }


# leadscore.model.stage_exit_margin of the models that have one (the others: 0), and stage_min_time
# (microseconds; the others: none).
MARGINS = {'held': 8.0, 'never': float('inf'), 'both': 4.0}
MIN_TIMES = {'minimum': DAY, 'both': DAY * 3 // 2}
# A stage's own (exit_margin, min_time) in place of the model's (None: the model's): 'both' holds 'ok' half a
# day only, and 'lukewarm' down to 10 below it.
STAGE_HOLDS = {'both': {'ok': (None, DAY // 2), 'lukewarm': (10.0, None)}}


def stage_for(bands, margin, score, previous, min_time=None, since=None, t=None, holds=None):
    """The stage of a lead whose stage was `previous` (entered at `since`) and whose score is `score` at t,
    under stage hysteresis: the score's own band when that is `previous` or higher; lower, `previous` while
    t is before since + min_time, or while score + margin still reaches its min_score, else the band
    score + margin reaches. `holds`: the stages' own (margin, min_time), in place of the model's."""
    raw = lsref.band_for(bands, score)
    low = dict(bands)
    if (not margin and not min_time and not holds) or previous is None or raw == previous or previous not in low:
        return raw
    if raw is not None and low[raw] >= low[previous]:
        return raw
    own_margin, own_min_time = (holds or {}).get(previous, (None, None))
    margin = own_margin if own_margin is not None else margin
    min_time = own_min_time if own_min_time is not None else min_time
    if min_time and since is not None and t < since + min_time:
        return previous
    lifted = score + margin
    if lifted >= low[previous]:
        return previous
    return lsref.band_for(bands, lifted)


def reference_changes(lead, t0, t1, margin=0, start=None, min_time=None, since=None, holds=None):
    """Every stage change of `lead` (an lsref.LeadRef) in (t0, t1]: its stage minute by minute, then each
    change located to the first microsecond of its new stage by bisection. Under a stage margin or a minimum
    time in stage the stage at each instant follows from the one before and when it was entered (stage_for),
    from `start` entered at `since` at t0."""
    prev = None
    memory = margin or min_time or holds

    def stage(t):
        r = lead.at(t, detail=False)
        return stage_for(lead.model.stages, margin, r.score, prev, min_time, since, t, holds) if memory else r.stage
    out = []
    prev_t = t0
    prev = start if memory else stage(t0)
    t = t0
    while t < t1:
        t = min(t + MIN, t1)
        cur = stage(t)
        if cur != prev:
            lo, hi = prev_t, t          # stage(lo) == prev, stage(hi) != prev
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if stage(mid) == prev:
                    lo = mid
                else:
                    hi = mid
            out.append((hi, prev, stage(hi)))
            prev = out[-1][2]
            since = hi
            # a second change inside the same minute is found from hi on
            t = hi
        prev_t = t
    return out


def create(schema):
    """A connection, and on it the CRM's two tables in schema and the three models scoring them; returns
    the connection, its cursor, the models and the transaction time then (microseconds)."""
    conn = checks.connect(autocommit=True)
    cur = conn.cursor()
    models = timeline_models(schema)
    cur.execute('CREATE EXTENSION IF NOT EXISTS leadscore')
    lsref.drop_models(cur, models.values())
    cur.execute('DROP SCHEMA IF EXISTS %s CASCADE' % schema)
    cur.execute('CREATE SCHEMA %s' % schema)
    cur.execute('CREATE TABLE %s.lead (id bigint PRIMARY KEY, plan text)' % schema)
    cur.execute('CREATE TABLE %s.event (lead bigint, kind text, at timestamptz NOT NULL)' % schema)
    cur.execute('CREATE INDEX ON %s.event (lead)' % schema)
    for m in models.values():
        for sql, params in m.install_sql():
            cur.execute(sql, params)
    for name, margin in MARGINS.items():
        cur.execute('UPDATE leadscore.model SET stage_exit_margin = %s WHERE name = %s', (margin, models[name].name))
    for name, min_time in MIN_TIMES.items():
        cur.execute("UPDATE leadscore.model SET stage_min_time = %s * interval '1 microsecond' WHERE name = %s",
                    (min_time, models[name].name))
    for name, holds in STAGE_HOLDS.items():
        for stage, (margin, min_time) in holds.items():
            cur.execute("UPDATE leadscore.stage SET exit_margin = %s, min_time = %s * interval '1 microsecond' "
                        "WHERE model = %s AND name = %s", (margin, min_time, models[name].name, stage))
    cur.execute('SELECT now()')
    return conn, cur, models, dt_to_us(cur.fetchone()[0])


def drop(cur, schema, models):
    lsref.drop_models(cur, models.values())
    cur.execute('DROP SCHEMA %s CASCADE' % schema)


def run(seed):
    rng = random.Random(seed)
    schema = 'tl%d' % seed
    conn, cur, models, now = create(schema)
    leads = {}
    n_leads = 40
    rows = []
    for lead in range(1, n_leads + 1):
        leads[lead] = rng.random() < 0.4
        for _ in range(rng.choice([0, 1, 2, 3, 5, 8])):
            kind = rng.choices(['demo', 'visit', 'unsub', 'other'], [2, 8, 1, 2])[0]
            at = now + rng.randint(-10 * DAY, 20 * DAY)
            if rng.random() < 0.2:       # events sharing an instant
                at = now + rng.randint(-3, 6) * DAY
            rows.append((lead, kind, us_to_dt(at)))
    # The rows, in a few statements (one transaction: one `now` for every trigger).
    cur.execute('BEGIN')
    cur.execute('SELECT now()')
    written = dt_to_us(cur.fetchone()[0])
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
        cur.execute('SELECT leadscore.advance_stages(%s)', (us_to_dt(t),))
        recorded_by_runs += cur.fetchone()[0]

    about = 'seed %d' % seed
    total_ref = 0
    for name, m in models.items():
        # The reference reads the rows back (each rule's condition evaluated by PostgreSQL), never leadscore.
        raw = lsref.fetch_raw(cur, m)
        cur.execute('SELECT lead, from_stage, to_stage, changed_at FROM leadscore.stage_changes '
                    'WHERE model = %s AND changed_at > %s ORDER BY lead, changed_at, id', (m.name, us_to_dt(written)))
        got = {}
        for lead, f, to, at in cur.fetchall():
            got.setdefault(lead, []).append((dt_to_us(at), f, to))
        # The stage each lead was given when the rows were written: the reference must agree.
        cur.execute('SELECT lead, stage FROM leadscore.scores_at(%s, %s)', (m.name, us_to_dt(written)))
        at_write = dict(cur.fetchall())
        margin = MARGINS.get(name, 0)
        min_time = MIN_TIMES.get(name)
        holds = STAGE_HOLDS.get(name)
        for key in sorted(raw.leads, key=int):
            lead = lsref.LeadRef(m, raw, key)
            mine = got.get(key, [])
            if margin or min_time or holds:
                # Under hysteresis the stage at the write depends on the order of the transaction's statements
                # (each the lead's stage at the same instant, from the one before): the reference walks on
                # from leadscore's, which must hold at that instant (stage_for gives it back). A lead given a
                # stage at the write entered it then.
                since = written if at_write.get(key) is not None else None
                expected = stage_for(m.stages, margin, lead.at(written).score, at_write.get(key), min_time, since,
                                     written, holds)
                ref = reference_changes(lead, written, end, margin, at_write.get(key), min_time, since, holds)
            else:
                expected = lead.at(written).stage
                ref = reference_changes(lead, written, end)
            total_ref += len(ref)
            checks.check('%s: %s lead %s: the stage when the rows were written is the reference\'s'
                         % (about, name, key), at_write.get(key) == expected, 'leadscore %r, reference %r' % (at_write.get(key), expected))
            same = len(ref) == len(mine) and all(
                abs(a[0] - b[0]) <= 1000 and a[1] == b[1] and a[2] == b[2] for a, b in zip(ref, mine))
            checks.check('%s: %s lead %s: the changes recorded are the reference\'s' % (about, name, key), same,
                         ['recorded  %s' % [(str(us_to_dt(a)), f, t) for a, f, t in mine],
                          'reference %s' % [(str(us_to_dt(a)), f, t) for a, f, t in ref]])
    checks.check('%s: the runs say they recorded as many changes as the reference has' % about,
                 recorded_by_runs == total_ref, 'the runs: %d, the reference: %d' % (recorded_by_runs, total_ref))
    # Every row is now scheduled after the last run, or never.
    cur.execute('SELECT count(*) FROM leadscore.state_int8 WHERE next_change <= %s', (us_to_dt(end),))
    n = cur.fetchone()[0]
    checks.check('%s: no state row is still due after the last run' % about, n == 0, '%d rows' % n)
    # A run again at the same instant records nothing more.
    cur.execute('SELECT leadscore.advance_stages(%s)', (us_to_dt(end),))
    n = cur.fetchone()[0]
    checks.check('%s: a second run at the same instant records nothing' % about, n == 0, '%d changes' % n)

    drop(cur, schema, models)
    conn.close()
    print('seed %d: %d leads, %d events, %d runs, %d stage changes by time' % (
        seed, n_leads, len(rows), len(times), total_ref))


def run_concurrent(seed, n_leads=2500, sessions=3):
    """Many leads (a run takes them 1,000 rows at a time) and SESSIONS sessions running advance_stages at
    the same instants at once. (No row changes meanwhile: runs at instants ahead of the real time record
    ahead, which only a test may do, and a row change then would record its changes at that instant
    ahead.) Too many leads for the minute scan: the checks are invariants. After the runs at t, every lead's last recorded stage is its exact stage at t
    (none lost); each lead's recorded changes form a chain, each from the stage the one before went to, at
    increasing instants (none twice); and the runs' counts add up to the changes recorded."""
    rng = random.Random(seed)
    schema = 'tlc%d' % seed
    conn, cur, models, now = create(schema)
    cur.execute('INSERT INTO %s.lead SELECT g, CASE WHEN g %% 3 = 0 THEN \'pro\' ELSE \'free\' END '
                'FROM generate_series(1, %d) g' % (schema, n_leads))
    rows = []
    for lead in range(1, n_leads + 1):
        for _ in range(rng.choice([0, 1, 2, 4])):
            kind = rng.choices(['demo', 'visit', 'unsub', 'other'], [2, 8, 1, 2])[0]
            rows.append((lead, kind, us_to_dt(now + rng.randint(-10 * DAY, 5 * DAY))))
    for i in range(0, len(rows), 500):
        cur.execute('INSERT INTO %s.event VALUES ' % schema + ', '.join(['(%s, %s, %s)'] * len(rows[i:i + 500])),
                    [v for r in rows[i:i + 500] for v in r])
    cur.execute('SELECT max(id) FROM leadscore.stage_change_int8')
    first_id = cur.fetchone()[0] or 0

    about = 'concurrent seed %d' % seed
    conns = [checks.connect(autocommit=True) for _ in range(sessions)]
    counts = []
    errors = []

    def advance(c, t):
        try:
            k = c.cursor()
            k.execute('SELECT leadscore.advance_stages(%s)', (us_to_dt(t),))
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
        for name, m in models.items():
            cur.execute('SELECT count(*) FROM leadscore.scores_at(%s, %s) s '
                        'LEFT JOIN (SELECT DISTINCT ON (lead) lead, to_stage FROM leadscore.stage_changes '
                        '            WHERE model = %s ORDER BY lead, changed_at DESC, id DESC) c ON c.lead = s.lead '
                        'WHERE s.stage IS DISTINCT FROM c.to_stage', (m.name, us_to_dt(t), m.name))
            off = cur.fetchone()[0]
            checks.check('%s: %s after the runs at step %d: every lead\'s last recorded stage is its stage'
                         % (about, name, step), off == 0, '%d leads whose last recorded stage is not their stage' % off)
    checks.check('%s: no error in the sessions' % about, not errors, errors[:3])
    for name, m in models.items():
        cur.execute('SELECT count(*) FROM (SELECT from_stage, lag(to_stage) OVER w AS before, changed_at, '
                    '       lag(changed_at) OVER w AS at_before FROM leadscore.stage_changes WHERE model = %s '
                    '       WINDOW w AS (PARTITION BY lead ORDER BY changed_at, id)) x '
                    'WHERE at_before IS NOT NULL AND (from_stage IS DISTINCT FROM before OR changed_at < at_before)',
                    (m.name,))
        broken = cur.fetchone()[0]
        checks.check('%s: %s: each recorded change follows the one before' % (about, name), broken == 0,
                     '%d recorded changes that do not follow the one before' % broken)
    cur.execute('SELECT count(*) FROM leadscore.stage_change_int8 c JOIN leadscore.model m ON m.id = c.model_id '
                'WHERE c.id > %s AND m.name LIKE %s AND c.changed_at > %s', (first_id, schema + '_%', us_to_dt(now)))
    by_time = cur.fetchone()[0]
    checks.check('%s: the runs\' counts add up to the changes recorded' % about, by_time == sum(counts),
                 'the runs said they recorded %d changes, %d are there' % (sum(counts), by_time))
    for c in conns:
        c.close()
    drop(cur, schema, models)
    conn.close()
    print('concurrent seed %d: %d leads, %d events, %d sessions, runs recorded %d changes' % (
        seed, n_leads, len(rows), sessions, sum(counts)))


def run_overlapping():
    """Transactions that began before a scheduled run, or before another transaction's write, and write
    after it: their stage changes must not be dated before what is already recorded (each lead's history in
    order, each change from the stage the one before went to). At the real time: a 2-second half-life.
      lead 1: A begins (tA); time alone takes the lead out of 'hot' at c > tA, a run records it; then A adds
              an event: without care, its change would be dated tA, before c.
      lead 2: A begins (tA); B adds a demo and commits (records NULL -> hot at tB > tA); then A adds an
              unsubscribe, dated tA (B's demo is later than tA): without care, hot -> NULL dated tA < tB;
              then the same with A raising the stage's bound (a recompute) instead."""
    about = 'overlapping transactions'
    before_count = checks.passed + checks.failed
    conn = checks.connect(autocommit=True)
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
    a = checks.connect()
    b = checks.connect(autocommit=True)
    ka, kb = a.cursor(), b.cursor()

    cur.execute("INSERT INTO tlo.event (lead, kind) VALUES (1, 'demo')")   # hot until 2 s later
    ka.execute('SELECT now()')                                             # A begins
    time.sleep(2.5)
    kb.execute('SELECT leadscore.advance_stages()')                         # records hot -> NULL at ~2 s
    n = kb.fetchone()[0]
    checks.check('%s: lead 1: the run recorded its change' % about, n >= 1, '%d changes' % n)
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
        checks.check('%s: lead %d: two changes or more recorded' % (about, lead), len(changes) >= 2, changes)
        for before, after in zip(changes, changes[1:]):
            checks.check('%s: lead %d: a change recorded after another is not dated before it' % (about, lead),
                         after[2] >= before[2], '%r recorded after %r' % (after, before))
            checks.check('%s: lead %d: a change goes from the stage the one before went to' % (about, lead),
                         after[0] == before[1], '%r after %r' % (after, before))
        cur.execute("SELECT s.stage FROM leadscore.scores s WHERE s.model = 'tlo' AND s.lead = %s", (str(lead),))
        now_stage = cur.fetchone()[0]
        checks.check('%s: lead %d: the last recorded stage is the stage now' % (about, lead),
                     changes and changes[-1][1] == now_stage,
                     'last recorded %r, now %r' % (changes[-1][1] if changes else None, now_stage))
    a.close()
    b.close()
    cur.execute("DELETE FROM leadscore.rule WHERE model = 'tlo'")
    cur.execute("DELETE FROM leadscore.model WHERE name = 'tlo'")
    cur.execute('DROP SCHEMA tlo CASCADE')
    conn.close()
    print('overlapping transactions: %d checks' % (checks.passed + checks.failed - before_count))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('seeds', nargs='*', type=int, default=[1, 2])
    args = ap.parse_args()
    checks.quiet = True   # hundreds of checks: the failures only, then the count
    err = lsref.selftest_error()
    if not checks.check('the reference passes its self-test (hand-computed cases)', err is None, err):
        sys.exit(checks.report())
    for seed in args.seeds:
        run(seed)
    run_concurrent(args.seeds[0] if args.seeds else 1)
    run_overlapping()
    sys.exit(checks.report())


if __name__ == '__main__':
    main()
