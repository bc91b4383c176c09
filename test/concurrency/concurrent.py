#!/usr/bin/python3
"""Concurrency test of leadscore: many sessions write events and leads of the same few leads at once.

THREADS sessions (own connection each, READ COMMITTED) run OPS random operations each on an overlapping set
of LEADS leads: single- and multi-row INSERTs, COPY, UPDATEs (moving an event to another lead, changing its
type or time, out of order and in the future), DELETEs (among them of a lead's latest event), lead updates,
inserts and deletes, in autocommit and in small multi-statement transactions (some rolled back); one session
also changes a rule now and then. Every deadlock (40P01), serialization failure (40001), statement timeout
or other error is a failure.

A session updates and deletes only the events it inserted, and the statements of one multi-statement
transaction touch leads in increasing order, so the workload alone cannot deadlock: a deadlock is leadscore's.

At the end, for several as_of times, leadscore.scores_at must equal leadscore.recompute (in a savepoint,
rolled back) and the independent Python reference (test/property/lsref.py).

Usage (from the repository root):
    scripts/with_pg.sh /usr/bin/python3 test/concurrency/concurrent.py [--threads 8] [--ops 300] [--leads 50]
                                                                       [--rounds 1] [--seed 1]
                                                                       [--no-rule-changes] [--trace FILE]
--trace writes every statement of every session with its start and end time (to analyse a race);
--no-rule-changes leaves out the rule updates one session makes during the run.
Prints an ok / not ok line per check (a failing one with its differences) and ends with a line
`N passed, N failed` (test/pylib/checks.py); exit status 1 on any failure.
"""

import argparse
import io
import os
import random
import sys
import threading
import time
import traceback

import psycopg2
import psycopg2.errors

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'property'))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'pylib'))
import checks  # noqa: E402
import lsref  # noqa: E402
from lsref import US_PER_DAY  # noqa: E402

SCHEMA = 'ls_conc'
PREFIX = 'conc_'
MAX_DETAIL = 25

EVENT_COLS = {
    'web_event': ('lead_id', 'type', 'url', 'amount', 'occurred_at'),
    'email_event': ('lead_id', 'type', 'url', 'amount', 'sent_at'),
    'note': ('lead_id', 'kind'),
}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = 0
        self.deadlocks = 0
        self.serialization = 0
        self.timeouts = 0
        self.errors = 0
        self.messages = []

    def add(self, what, msg=None):
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)
            if msg and len(self.messages) < 20:
                self.messages.append(msg)


class TracingCursor(psycopg2.extensions.cursor):
    """Records every statement of a worker (start and end time) when tracing is on."""
    worker = None

    def execute(self, sql, params=None):
        t = time.monotonic()
        try:
            return super().execute(sql, params)
        finally:
            self.worker.trace_add(t, (self.query or b'').decode(errors='replace'))

    def copy_expert(self, sql, f, *a, **k):
        t = time.monotonic()
        data = f.getvalue()
        try:
            return super().copy_expert(sql, f, *a, **k)
        finally:
            self.worker.trace_add(t, sql + ';\n' + data + '\\.')


class Worker(threading.Thread):
    def __init__(self, no, seed, nops, leads, base, stats, barrier, config, trace=None, rule_changes=True):
        self.rule_changes = rule_changes
        super().__init__(name='worker%d' % no)
        self.no = no
        self.rng = random.Random(seed * 1000 + no)
        self.nops = nops
        self.leads = leads
        self.base = base
        self.stats = stats
        self.barrier = barrier
        self.config = config          # (lock, models) shared; only worker 0 changes rules
        self.owned = {t: {} for t in EVENT_COLS}   # table -> {event id: lead}
        self.conn = None
        self.trace = trace            # shared list of (start, end, worker, statement) or None

    # -- values --------------------------------------------------------------------------------
    def rand_time(self):
        r = self.rng.random()
        if r < 0.85:
            return self.base - self.rng.randint(0, 365 * US_PER_DAY)
        if r < 0.93:
            return self.base - self.rng.randint(365 * US_PER_DAY, 4 * 365 * US_PER_DAY)
        return self.base + self.rng.randint(1, 10 * US_PER_DAY)

    def lead(self):
        return self.rng.randint(1, self.leads) if self.rng.random() > 0.03 else None

    def row(self, table, lead):
        rng = self.rng
        if table == 'note':
            return [lead, rng.choice(['call', 'meeting', 'complaint', 'memo'])]
        if table == 'web_event':
            t = rng.choice(['page_view', 'page_view', 'webinar', 'download', 'demo_request', 'purchase'])
            url = rng.choice(['/pricing', '/docs', '/white-paper/a.pdf']) if t in ('page_view', 'download') else None
            amount = rng.choice([None, 1500]) if t == 'purchase' else None
            return [lead, t, url, amount, lsref.us_to_tstz_literal(self.rand_time())]
        t = rng.choice(['email_open', 'email_open', 'email_click', 'unsubscribe', 'bounce'])
        url = '/pricing' if t == 'email_click' else None
        return [lead, t, url, None, lsref.us_to_ts_literal(self.rand_time())]

    def table(self):
        return self.rng.choices(list(EVENT_COLS), [45, 40, 15])[0]

    # -- statements (each returns the changes to `owned` to apply once committed) --------------
    def insert(self, cur, leads):
        t = self.table()
        cols = EVENT_COLS[t]
        rows = [self.row(t, l) for l in leads]
        ph = '(' + ', '.join(['%s'] * len(cols)) + ')'
        cur.execute('INSERT INTO %s.%s (%s) VALUES %s RETURNING id, lead_id'
                    % (SCHEMA, t, ', '.join(cols), ', '.join([ph] * len(rows))), [v for r in rows for v in r])
        return [(t, i, l) for i, l in cur.fetchall()]

    def own(self, t, lead=None):
        ids = [i for i, l in self.owned[t].items() if lead is None or l == lead]
        return sorted(ids)

    def update(self, cur, lead=None):
        """Updates own events (of `lead` only, and without moving them, when given)."""
        t = self.table()
        ids = self.own(t, lead)
        if not ids:
            return []
        sel = self.rng.sample(ids, min(len(ids), self.rng.choice([1, 1, 3])))
        v = self.rng.randrange(3 if lead is None else 2)
        tcol = EVENT_COLS[t][-1] if t != 'note' else None
        if v == 0:
            r = self.row(t, None)
            cur.execute('UPDATE %s.%s SET %s = %%s WHERE id = ANY(%%s)' % (SCHEMA, t, EVENT_COLS[t][1]), (r[1], sel))
            return []
        if v == 1 and tcol:
            r = self.row(t, None)
            cur.execute('UPDATE %s.%s SET %s = %%s WHERE id = ANY(%%s)' % (SCHEMA, t, tcol), (r[-1], sel))
            return []
        if lead is not None:
            return []
        new = self.lead()
        cur.execute('UPDATE %s.%s SET lead_id = %%s WHERE id = ANY(%%s) RETURNING id, lead_id' % (SCHEMA, t), (new, sel))
        return [(t, i, l) for i, l in cur.fetchall()]

    def delete(self, cur, lead=None):
        t = self.table()
        ids = self.own(t, lead)
        if not ids:
            return []
        if t != 'note' and self.rng.random() < 0.4:
            # The latest of own events of a lead: it may be the lead's last activity.
            l = lead if lead is not None else self.owned[t][self.rng.choice(ids)]
            tcol = EVENT_COLS[t][-1]
            cur.execute('DELETE FROM %s.%s WHERE id IN (SELECT id FROM %s.%s WHERE id = ANY(%%s) AND lead_id '
                        'IS NOT DISTINCT FROM %%s ORDER BY %s DESC LIMIT 1) RETURNING id'
                        % (SCHEMA, t, SCHEMA, t, tcol), (ids, l))
        else:
            sel = self.rng.sample(ids, min(len(ids), self.rng.choice([1, 1, 4])))
            cur.execute('DELETE FROM %s.%s WHERE id = ANY(%%s) RETURNING id' % (SCHEMA, t), (sel,))
        return [(t, i, 'deleted') for (i,) in cur.fetchall()]

    def update_lead(self, cur, lead):
        rng = self.rng
        cur.execute('UPDATE %s.lead SET industry = %%s, employees = %%s, email = %%s WHERE id = %%s' % SCHEMA,
                    (rng.choice(['Technology', 'Retail', None]), rng.choice([50, 200, 2000, None]),
                     rng.choice(['a@gmail.com', 'b@acme.com', None]), lead))
        return []

    def copy(self, cur):
        t = self.rng.choice(['web_event', 'email_event'])
        lines = []
        for _ in range(self.rng.randint(1, 20)):
            r = self.row(t, self.lead())
            lines.append(','.join('' if x is None else str(x) for x in r))
        cur.copy_expert('COPY %s.%s (%s) FROM STDIN WITH (FORMAT csv)' % (SCHEMA, t, ', '.join(EVENT_COLS[t])),
                        io.StringIO('\n'.join(lines) + '\n'))
        return []

    def commit(self):
        t = time.monotonic()
        self.conn.commit()
        self.trace_add(t, 'COMMIT')

    def rollback(self):
        t = time.monotonic()
        self.conn.rollback()
        self.trace_add(t, 'ROLLBACK')

    def trace_add(self, t0, text):
        if self.trace is not None:
            self.trace.append((t0, time.monotonic(), self.no, text))

    def trace_note(self, text):
        self.trace_add(time.monotonic(), '-- ' + text)

    def apply(self, changes):
        for t, i, l in changes:
            if l == 'deleted':
                self.owned[t].pop(i, None)
            else:
                self.owned[t][i] = l

    # -- operations ----------------------------------------------------------------------------
    def one_op(self, cur):
        rng = self.rng
        v = rng.choices(['insert', 'update', 'delete', 'lead', 'leadrow', 'copy', 'txn', 'config'],
                        [30, 15, 15, 8, 4, 4, 22, 2 if self.no == 0 and self.rule_changes else 0])[0]
        if v == 'txn':
            return self.transaction(cur)
        if v == 'insert':
            ch = self.insert(cur, [self.lead() for _ in range(rng.choice([1, 1, 2, 5]))])
        elif v == 'update':
            ch = self.update(cur)
        elif v == 'delete':
            ch = self.delete(cur)
        elif v == 'lead':
            ch = self.update_lead(cur, rng.randint(1, self.leads))
        elif v == 'leadrow':
            l = rng.randint(1, self.leads)
            if rng.random() < 0.5:
                cur.execute('INSERT INTO %s.lead (id, industry, employees) VALUES (%%s, %%s, %%s) ON CONFLICT DO NOTHING'
                            % SCHEMA, (l, 'Technology', 150))
            else:
                cur.execute('DELETE FROM %s.lead WHERE id = %%s' % SCHEMA, (l,))
            ch = []
        elif v == 'copy':
            ch = self.copy(cur)
        else:
            ch = self.change_rule(cur)
        self.commit()
        self.apply(ch)

    def transaction(self, cur):
        """2-4 statements; the leads they touch increase from one statement to the next."""
        rng = self.rng
        leads = sorted(rng.sample(range(1, self.leads + 1), min(self.leads, rng.randint(2, 4))))
        changes = []
        for l in leads:
            v = rng.randrange(4)
            if v == 0:
                changes += self.insert(cur, [l] * rng.randint(1, 3))
            elif v == 1:
                changes += self.update(cur, l)
            elif v == 2:
                changes += self.delete(cur, l)
            else:
                changes += self.update_lead(cur, l)
        if rng.random() < 0.1:
            self.rollback()
        else:
            self.commit()
            self.apply(changes)

    def change_rule(self, cur):
        lock, models = self.config
        with lock:
            m = models[PREFIX + 'saas'] if self.rng.random() < 0.7 else models[PREFIX + 'nodecay']
            r = self.rng.choice(m.rules)
            pts = float(self.rng.choice([-10, 1, 5, 12, 25]))
            cur.execute('UPDATE leadscore.rule SET points = %s WHERE model = %s AND name = %s', (pts, m.name, r['name']))
            self.commit()
            r['points'] = pts
        return []

    def run(self):
        try:
            self.conn = checks.connect()
            cur = self.conn.cursor(cursor_factory=TracingCursor)
            cur.worker = self
            cur.execute("SET statement_timeout = '120s'")
            cur.execute('SET TimeZone = %s', (['Europe/Paris', 'America/New_York', 'UTC', 'Asia/Tokyo'][self.no % 4],))
            self.conn.commit()
        except Exception as e:
            self.stats.add('errors', 'worker %d: cannot connect: %s' % (self.no, e))
            self.barrier.abort()
            return
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            return
        for _ in range(self.nops):
            try:
                self.one_op(cur)
                self.stats.add('ops')
            except psycopg2.Error as e:
                code = e.pgcode
                msg = 'worker %d: %s %s' % (self.no, code, str(e).strip().splitlines()[0] if str(e) else '')
                if cur.query:
                    msg += ' | statement: ' + cur.query.decode(errors='replace')[:400]
                if code == '40P01':
                    self.stats.add('deadlocks', msg + ' | ' + ' '.join(str(e).split()))
                elif code == '40001':
                    self.stats.add('serialization', msg)
                elif code == '57014':
                    self.stats.add('timeouts', msg)
                else:
                    self.stats.add('errors', msg)
                self.trace_note('error %s: %s' % (code, str(e).strip().splitlines()[0] if str(e) else ''))
                try:
                    self.rollback()
                except psycopg2.Error:
                    pass
            except Exception:
                self.stats.add('errors', 'worker %d: %s' % (self.no, traceback.format_exc()))
                try:
                    self.conn.rollback()
                except Exception:
                    pass
        self.conn.close()


def record(bad, what):
    """One check, which holds when `bad` (the differences found, as lines) is empty."""
    checks.check(what, not bad, bad, max_lines=MAX_DETAIL)


def final_check(conn, models, base, rng):
    cur = conn.cursor()
    now = lsref.db_now_us(cur)
    as_ofs = [('now', now), ('past', base - 100 * US_PER_DAY), ('future', now + 30 * US_PER_DAY)]
    for m in models.values():
        raw = lsref.fetch_raw(cur, m)
        refs = {label: lsref.reference_scores(m, raw, t) for label, t in as_ofs}
        live = {}
        for label, t in as_ofs:
            got, dups = lsref.db_scores(cur, m.name, t)
            live[label] = got
            record(lsref.compare(got, refs[label], m.check_grade(), dups,
                                     label='%s live vs reference at %s (%d)' % (m.name, label, t)),
                       'scores_at(%s, %s) = reference' % (m.name, label))
            record(lsref.compare(lsref.sql_reference_scores(cur, m, t), refs[label], m.check_grade(),
                                     label='%s SQL reference vs Python reference at %s' % (m.name, label)),
                       'reference self-check %s at %s' % (m.name, label))
        cur.execute('SAVEPOINT recompute')
        cur.execute('SELECT leadscore.recompute(%s)', (m.name,))
        for label, t in as_ofs:
            got, dups = lsref.db_scores(cur, m.name, t)
            record(lsref.compare(got, refs[label], m.check_grade(), dups,
                                     label='%s recompute vs reference at %s (%d)' % (m.name, label, t)),
                       'recompute then scores_at(%s, %s) = reference' % (m.name, label))
            record(lsref.compare(live[label], got, m.check_grade(),
                                     label='%s live vs recompute at %s (%d)' % (m.name, label, t)),
                       'scores_at(%s, %s) = recompute' % (m.name, label))
        cur.execute('ROLLBACK TO SAVEPOINT recompute')
        bad = []
        for key in rng.sample(sorted(refs['now']), min(5, len(refs['now']))):
            bad += lsref.check_explain(cur, m, key, now, live['now'].get(key), refs['now'][key])
        record(bad, 'explain(%s)' % m.name)
    conn.rollback()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=8)
    ap.add_argument('--ops', type=int, default=300, help='operations per thread and round')
    ap.add_argument('--leads', type=int, default=50)
    ap.add_argument('--rounds', type=int, default=1, help='concurrent phases, each followed by the checks')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--no-rule-changes', action='store_true', help='no session changes a rule during the run')
    ap.add_argument('--trace', metavar='FILE', help='write every statement of every session, in start order')
    args = ap.parse_args()

    rng = random.Random(args.seed)
    conn = checks.connect()
    cur = conn.cursor()
    models = {m.name: m for m in lsref.crm_models(SCHEMA, PREFIX, with_contacts=False)}
    try:
        cur.execute('CREATE EXTENSION IF NOT EXISTS leadscore')
        lsref.drop_models(cur, models.values())
        for s in lsref.crm_ddl(SCHEMA):
            cur.execute(s)
        base = lsref.db_now_us(cur)
        # Most keys are leads; the others only have events.
        for l in range(1, args.leads + 1):
            if rng.random() < 0.8:
                cur.execute('INSERT INTO %s.lead (id, industry, employees, country, email, name) '
                            'VALUES (%%s, %%s, %%s, %%s, %%s, %%s)' % SCHEMA,
                            (l, rng.choice(['Technology', 'Retail', 'Health']), rng.choice([20, 150, 5000]),
                             rng.choice(['US', 'FR', 'GB']), rng.choice(['x@gmail.com', 'y@acme.com']),
                             rng.choice(['Ann', 'asdf', 'Bo'])))
        for m in models.values():
            for sql, params in m.install_sql():
                cur.execute(sql, params)
        conn.commit()

        for rnd in range(args.rounds):
            stats = Stats()
            barrier = threading.Barrier(args.threads)
            config = (threading.Lock(), models)
            trace = [] if args.trace else None
            workers = [Worker(i, args.seed + rnd, args.ops, args.leads, base, stats, barrier, config, trace,
                              not args.no_rule_changes)
                       for i in range(args.threads)]
            t0 = time.time()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            print('round %d: %d threads, %d operations done in %.1fs: %d deadlocks, %d serialization failures, '
                  '%d timeouts, %d other errors'
                  % (rnd + 1, args.threads, stats.ops, time.time() - t0, stats.deadlocks, stats.serialization,
                     stats.timeouts, stats.errors))
            for msg in stats.messages:
                print('   ', msg)
            if trace is not None:
                with open(args.trace, 'a') as f:
                    f.write('-- round %d\n' % (rnd + 1))
                    for t0, t1, no, text in sorted(trace):
                        f.write('-- [%.6f .. %.6f] worker %d\n%s;\n' % (t0, t1, no, text))
            record(['%d deadlocks' % stats.deadlocks] if stats.deadlocks else [], 'no deadlock')
            record(['%d serialization failures' % stats.serialization] if stats.serialization else [],
                       'no serialization failure')
            record(['%d statement timeouts' % stats.timeouts] if stats.timeouts else [], 'no statement timeout')
            record(['%d other errors' % stats.errors] if stats.errors else [], 'no other error')
            for t in ('lead', 'web_event', 'email_event', 'note'):
                cur.execute('SELECT count(*) FROM %s.%s' % (SCHEMA, t))
                print('    %s: %d rows' % (t, cur.fetchone()[0]))
            conn.rollback()
            final_check(conn, models, base, rng)
    except Exception:
        traceback.print_exc()
        checks.check('the run went to the end without an unexpected exception', False)
    finally:
        try:
            conn.rollback()
            lsref.drop_models(cur, models.values())
            cur.execute('DROP SCHEMA IF EXISTS %s CASCADE' % SCHEMA)
            conn.commit()
        except Exception:
            traceback.print_exc()
        conn.close()
    sys.exit(checks.report())


if __name__ == '__main__':
    main()
