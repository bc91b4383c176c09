#!/usr/bin/python3
"""Randomized exactness test of leadscore: live scores = from-scratch recompute = an independent reference.

For each seed, builds a demo CRM (a bigint-keyed lead table, an event table dated by timestamptz, one dated by
timestamp, one without time column, and a text-keyed contact table with its events), three models, then runs
random batches of operations: single and multi-row INSERTs, INSERT ... SELECT, COPY, UPDATEs of an event's
lead, type or time (out of order, far in the past, in the future), UPDATEs of a lead's attributes and key,
DELETEs, MERGE, INSERT ... ON CONFLICT, writable CTEs, TRUNCATE, events of unknown leads and with NULL lead,
statements that fire several triggers of one event table on the same leads (same_table: an upsert moving rows to
a lead and adding rows for it, a MERGE that updates, deletes and inserts, WITH queries, a reset and events),
engagement resets recorded and deleted (1.2; rules with frequency caps are in the models),
failing statements rolled back (whole transaction or to a savepoint) and rule changes (in this session and
from another one). After each batch, for several as_of times, compares leadscore.scores_at with the Python
reference (lsref.py) and with leadscore.recompute (in a savepoint, rolled back), and checks
leadscore.explain for a few leads.

The timestamptz event table, web_event, is partitioned (1.5) by range of its time: web_event_old, web_event_mid
(partitioned itself, by list of type: _mid_view, _mid_intent and the default _mid_other), web_event_new (made as a
table apart, its columns in another order and one dropped, filled, and attached once the models track web_event)
and web_event_default; the ranges are days around the run's start (see WEB_PARTS). The reference reads web_event as
any table. Operations on the partitions (their statements also run in the rolled back transactions and savepoints):
  partition_dml        INSERT (columns named in any order, or in the table's own order), COPY, UPDATE of lead, type,
                       time, DELETE, INSERT ... ON CONFLICT DO UPDATE, straight into one partition (a leaf, or
                       web_event_mid) with rows within its bounds; now and then into a detached table (scored only
                       once it is attached back)
  partition_move       UPDATEs through web_event that move rows to other partitions (a new time, two at once, a
                       shift), and through web_event_mid to another of its partitions (a new type)
  partition_ddl        on one leaf partition (either level): TRUNCATE, ALTER TABLE ... DETACH PARTITION (at times
                       attached back at once), DROP TABLE (at times made again at once); a detached or dropped
                       partition (a leaf, or web_event_mid) brought back: ATTACH PARTITION, or CREATE TABLE ...
                       PARTITION OF, or a table made apart (random column order, a dropped column) filled and attached;
                       a detached table dropped
  subpartition_ddl     TRUNCATE, DETACH, DROP of web_event_mid (the rows of its three leaves leave at once)
  truncate_partitions  TRUNCATE of several tables in one statement: two partitions, or one and note (in either
                       order), or one and a detached table
(about 10% of the operations between them: weights 6, 3, 2, 0.7, 0.15 of 117.3 in Runner.OPS),
and, among the failing statements, a DETACH PARTITION or DROP TABLE of a partition that fails once leadscore has read
its rows. Before an ATTACH PARTITION or CREATE TABLE ... PARTITION OF, the rows of the partition's bounds that the
default partition took meanwhile move into it (one statement: DELETE ... RETURNING in a CTE, INSERT), so that
PostgreSQL accepts it; DEFAULT partitions are never detached, so that every row finds a partition.

Usage (from the repository root):
    scripts/with_pg.sh /usr/bin/python3 test/property/exactness.py [--ops N] [--dry-run] [--citus] [SEED ...]
--citus runs the same operations on a Citus cluster (see Runner.CITUS_SKIP for what is left out or done as
Citus needs it; each batch through the coordinator or a worker); test/citus/run.sh runs it (2,000 operations,
in a database of its own).
--dry-run runs the operations and the reference without the extension (the Python reference is then only
checked against its SQL formulation). --skip OP leaves out one kind of operation (a name of Runner.OPS, e.g.
`--skip cte` to get past a known bug); repeatable. Every statement is logged to
/tmp/leadscore_exactness_seedN.sql (--log-dir), replayable with psql.
Prints each failing check (`not ok - ...`, with its differences) and a summary per seed; ends with a line
`N passed, N failed` (test/pylib/checks.py); exit status 1 on any failure.
"""

import argparse
import io
import os
import random
import sys
import time
import traceback

import psycopg2
import psycopg2.errors

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'pylib'))
import checks  # noqa: E402
import lsref  # noqa: E402
from lsref import US_PER_DAY, NEG_INF, AS_OF_SQL  # noqa: E402

SCHEMA = 'ls_prop'
PREFIX = 'prop_'
LEAD_KEYS = 400                                   # lead keys 1..LEAD_KEYS (some only ever in events)
ORPHANS = list(range(900001, 900013))             # keys that events name but the lead table never holds
CONTACTS = ['c%d@x.io' % i for i in range(1, 61)]
GHOSTS = ['ghost%d@x.io' % i for i in range(1, 6)]
TIMEZONES = ['Europe/Paris', 'America/New_York', 'Asia/Kolkata']
MAX_DETAIL = 25                                   # mismatch lines printed per failing batch

WEB_URLS = ['/pricing', '/pricing/enterprise', '/docs/start', '/blog/scoring', '/', '/white-paper/roi.pdf']

# web_event is partitioned (1.5), by range of occurred_at: web_event_old, web_event_mid (itself partitioned by
# list of type: _view, _intent and a default _other), web_event_new (made apart, its columns in another order and
# one dropped, attached in setup) and web_event_default. The ranges are days before and after the run's start.
WEB_TYPES = ['page_view', 'webinar', 'download', 'demo_request', 'purchase', 'email_open', 'signup']
WEB_PARTS = {
    # name: (parent, range in days from the run's first UTC midnight, list of types, default, partitioned)
    'web_event_old': ('web_event', (-300, -150), None, False, False),
    'web_event_mid': ('web_event', (-150, -45), None, False, True),
    'web_event_mid_view': ('web_event_mid', None, ('page_view',), False, False),
    'web_event_mid_intent': ('web_event_mid', None, ('webinar', 'demo_request', 'download'), False, False),
    'web_event_mid_other': ('web_event_mid', None, None, True, False),
    'web_event_new': ('web_event', (-45, 10), None, False, False),
    'web_event_default': ('web_event', None, None, True, False),
}
# The partitions that are detached, dropped, attached and created again (never a default one).
MOVABLE_PARTS = [n for n, s in WEB_PARTS.items() if not s[3]]
# web_event's columns, for the tables made apart (then attached) in another order.
WEB_COLUMNS = [('id', "bigint NOT NULL DEFAULT nextval('%s.web_event_id_seq')" % SCHEMA), ('lead_id', 'bigint'),
               ('type', 'text NOT NULL'), ('url', 'text'), ('amount', 'numeric(12,2)'),
               ('occurred_at', 'timestamptz NOT NULL')]
WEB_COLS = ', '.join(c for c, _ in WEB_COLUMNS)


class Fail(Exception):
    pass


def csv_data(rows):
    """COPY ... (FORMAT csv) data of rows (lists of values, None as NULL)."""
    lines = []
    for row in rows:
        cells = []
        for x in row:
            if x is None:
                cells.append('')
            else:
                s = str(x)
                cells.append('"' + s.replace('"', '""') + '"' if (',' in s or '"' in s or s == '') else s)
        lines.append(','.join(cells))
    return '\n'.join(lines) + '\n'


class Runner:
    # On a Citus cluster (--citus): the operations Citus or leadscore refuse on distributed tables are left out
    # (TRUNCATE of a tracked table, partitioned tracked tables, MERGE from VALUES: Citus wants Citus tables as
    # its source) or made as Citus needs them (a lead key or an event's lead changed by a DELETE and an INSERT,
    # in one statement; no NULL lead: Citus refuses NULL in a distribution column).
    CITUS_SKIP = ('truncate', 'merge', 'partition_dml', 'partition_move', 'partition_ddl', 'subpartition_ddl',
                  'truncate_partitions', 'same_table')

    def __init__(self, seed, nops, dry_run, log_path, skip=(), workers=(), base=None):
        self.citus = bool(workers)
        self.skip = set(skip) | (set(self.CITUS_SKIP) if self.citus else set())
        self.seed = seed
        self.rng = random.Random(seed)
        self.nops = nops
        self.dry_run = dry_run
        self.log_path = log_path
        self.log = []                 # every statement, for reproduction
        self.batch_log = []           # statements of the current batch
        self.failing_batches = 0
        self.ops_done = 0
        self.op_counts = {}
        self.ddl_counts = {}          # partition DDL done, by kind
        self.conn = checks.connect()
        self.conn2 = checks.connect(autocommit=True)
        self.cur = self.conn.cursor()
        self.cur2 = self.conn2.cursor()
        self.tz = TIMEZONES[seed % len(TIMEZONES)]
        # Citus: each batch writes through the coordinator or a worker (Citus routes to the lead's node).
        self.nodes = [(self.conn, self.cur)]
        for port in workers:
            c = psycopg2.connect(port=int(port))
            c.cursor().execute('SET TimeZone = %s', (self.tz,))
            c.commit()
            self.nodes.append((c, c.cursor()))
        self.coordinator = self.nodes[0]
        self.configurable = True      # whether this batch's node may change the configuration
        self.cur.execute('SET TimeZone = %s', (self.tz,))
        self.cur2.execute("SET TimeZone = 'Pacific/Auckland'")
        self.conn.commit()
        # The generator's times are drawn around `base` (default: now), so the operations of a seed depend on
        # it (which partition a time falls in, ...): a failure is replayed with the same seed and --base.
        if base is None:
            self.base = lsref.db_now_us(self.cur)
        else:
            self.cur.execute('SELECT ' + lsref.epoch_us_sql('%s::timestamptz'), (base,))
            self.base = self.cur.fetchone()[0]
            if self.base > lsref.db_now_us(self.cur):
                raise SystemExit('--base %s is later than now: engagement resets there would be refused' % base)
        self.conn.rollback()
        # A few shared times, so that events tie (once-per-lead earliest, last activity).
        self.anchors = [self.base - self.rng.randint(0, 200) * US_PER_DAY for _ in range(6)]
        self.models = {m.name: m for m in lsref.crm_models(SCHEMA, PREFIX)}
        self.init_parts()
        self.pending = None           # configuration as this transaction sees it
        self.saved = None             # configuration at the savepoint
        self.in_txn = False

    # -- plumbing ------------------------------------------------------------------------------
    def _log(self, line):
        self.batch_log.append(line)
        self.log.append(line)

    def write_log(self):
        with open(self.log_path, 'w') as f:
            f.write('\n'.join(self.log) + '\n')

    # The log replays with psql: BEGIN where psycopg2 opens a transaction implicitly.
    def begin_logged(self, cur):
        if cur is self.cur and not self.in_txn:
            self._log('BEGIN;')
            self.in_txn = True

    def ex(self, sql, params=None, cur=None):
        cur = cur or self.cur
        text = cur.mogrify(sql, params).decode() if params is not None else sql
        self.begin_logged(cur)
        self._log(text + ';')
        cur.execute(text)

    def commit(self):
        self._log('COMMIT;')
        self.in_txn = False
        self.conn.commit()

    def rollback(self):
        self._log('ROLLBACK;')
        self.in_txn = False
        self.conn.rollback()

    def copy(self, sql, data):
        self.begin_logged(self.cur)
        self._log('%s;\n%s\\.' % (sql, data))
        self.cur.copy_expert(sql, io.StringIO(data))

    def q(self, t):
        return '%s.%s' % (SCHEMA, t)

    def fetch_col(self, sql, params=None):
        self.cur.execute(sql, params)
        return [r[0] for r in self.cur.fetchall()]

    def event_ids(self, table, lead=None):
        if lead is None:
            return self.fetch_col('SELECT id FROM %s ORDER BY id' % self.q(table))
        col = 'contact_email' if table == 'contact_event' else 'lead_id'
        return self.fetch_col('SELECT id FROM %s WHERE %s = %%s ORDER BY id' % (self.q(table), col), (lead,))

    def lead_keys(self):
        return self.fetch_col('SELECT id FROM %s ORDER BY id' % self.q('lead'))

    def contact_keys(self):
        return self.fetch_col('SELECT email FROM %s ORDER BY email' % self.q('contact'))

    def sample(self, seq, k):
        return self.rng.sample(seq, min(k, len(seq)))

    # -- random values -------------------------------------------------------------------------
    def rand_time(self):
        r = self.rng.random()
        if r < 0.08:
            return self.rng.choice(self.anchors)
        if r < 0.78:
            return self.base - self.rng.randint(0, 365 * US_PER_DAY)
        if r < 0.86:
            return self.base - self.rng.randint(365 * US_PER_DAY, 6 * 365 * US_PER_DAY)   # far in the past
        if r < 0.94:
            return self.base - self.rng.randint(0, 2 * US_PER_DAY)
        return self.base + self.rng.randint(1, 20 * US_PER_DAY)                           # in the future

    def time_lit(self, table, us):
        return lsref.us_to_ts_literal(us) if table == 'email_event' else lsref.us_to_tstz_literal(us)

    def pick_lead(self):
        r = self.rng.random()
        if r < 0.06:
            return None if not self.citus else self.rng.choice(ORPHANS)
        if r < 0.16:
            return self.rng.choice(ORPHANS)
        if r < 0.30:
            return self.rng.randint(1, LEAD_KEYS)
        keys = self.lead_keys()
        return self.rng.choice(keys) if keys else self.rng.randint(1, LEAD_KEYS)

    def pick_contact(self):
        r = self.rng.random()
        if r < 0.06:
            return None if not self.citus else self.rng.choice(GHOSTS)
        if r < 0.16:
            return self.rng.choice(GHOSTS)
        if r < 0.30:
            return self.rng.choice(CONTACTS)
        keys = self.contact_keys()
        return self.rng.choice(keys) if keys else self.rng.choice(CONTACTS)

    def web_row(self):
        rng = self.rng
        t = rng.choices(['page_view', 'webinar', 'download', 'demo_request', 'purchase', 'email_open', 'signup'],
                        [40, 10, 12, 8, 8, 5, 5])[0]
        url = amount = None
        if t == 'page_view':
            url = rng.choice(WEB_URLS)
        elif t == 'download':
            url = rng.choice(['/white-paper/roi.pdf', '/ebook/guide.pdf', '/white-paper/ai.pdf'])
        elif t == 'purchase':
            amount = rng.choice([None, 50, 999.99, 1000, 4500])
        return [self.pick_lead(), t, url, amount, self.rand_time()]

    def email_row(self):
        rng = self.rng
        t = rng.choices(['email_open', 'email_click', 'unsubscribe', 'bounce', 'purchase', 'page_view'],
                        [50, 20, 8, 7, 5, 5])[0]
        url = rng.choice(['/pricing', '/blog/x', None]) if t in ('email_click', 'page_view') else None
        amount = rng.choice([10, 2000]) if t == 'purchase' else None
        return [self.pick_lead(), t, url, amount, self.rand_time()]

    def note_row(self):
        return [self.pick_lead(), self.rng.choice(['call', 'meeting', 'complaint', 'memo', None])]

    def contact_event_row(self):
        t = self.rng.choices(['visit', 'reply', 'bounce', 'other'], [60, 15, 10, 15])[0]
        return [self.pick_contact(), t, self.rand_time()]

    def lead_attrs(self):
        rng = self.rng
        name = rng.choice(['Alice', 'Bob', 'asdf', 'AZERTY', 'Test', 'Carol', 'Dan', None])
        domain = rng.choice(['gmail.com', 'yahoo.com', 'acme.com', 'corp.io', 'hotmail.com'])
        return dict(industry=rng.choice(['Technology', 'Retail', 'Finance', 'Health', None]),
                    employees=rng.choice([None, 5, 50, 99, 100, 250, 500, 501, 2000, 10000]),
                    country=rng.choice(['US', 'FR', 'DE', 'GB', 'IN', None]),
                    email=rng.choice([None, '%s@%s' % ((name or 'x').lower(), domain)]),
                    name=name)

    EVENT_COLS = {
        'web_event': ('lead_id', 'type', 'url', 'amount', 'occurred_at'),
        'email_event': ('lead_id', 'type', 'url', 'amount', 'sent_at'),
        'note': ('lead_id', 'kind'),
        'contact_event': ('contact_email', 'type', 'at'),
    }

    def make_row(self, table):
        if table == 'web_event':
            return self.web_row()
        if table == 'email_event':
            return self.email_row()
        if table == 'note':
            return self.note_row()
        return self.contact_event_row()

    def row_params(self, table, row):
        if table in ('web_event', 'email_event'):
            return row[:4] + [self.time_lit(table, row[4])]
        if table == 'contact_event':
            return row[:2] + [lsref.us_to_tstz_literal(row[2])]
        return row

    def pick_event_table(self):
        return self.rng.choices(['web_event', 'email_event', 'note', 'contact_event'], [40, 35, 10, 15])[0]

    # -- operations on events ------------------------------------------------------------------
    def op_insert_rows(self):
        t = self.pick_event_table()
        n = 1 if self.rng.random() < 0.5 else self.rng.randint(2, 25)
        cols = self.EVENT_COLS[t]
        rows = [self.row_params(t, self.make_row(t)) for _ in range(n)]
        ph = '(' + ', '.join(['%s'] * len(cols)) + ')'
        self.ex('INSERT INTO %s (%s) VALUES %s' % (self.q(t), ', '.join(cols), ', '.join([ph] * n)),
                [v for r in rows for v in r])

    def op_insert_select(self):
        rng = self.rng
        v = rng.randrange(5)
        if v == 0:
            ids = self.sample(self.event_ids('web_event'), rng.randint(1, 15))
            self.ex("INSERT INTO %s (lead_id, type, url, amount, occurred_at) SELECT lead_id, type, url, amount, "
                    "occurred_at - %s * interval '1 day' FROM %s WHERE id = ANY(%%s)"
                    % (self.q('web_event'), rng.randint(-3, 400), self.q('web_event')), (ids,))
        elif v == 1:
            m, r = rng.randint(3, 9), rng.randint(0, 2)
            self.ex("INSERT INTO %s (lead_id, type, url, amount, sent_at) SELECT id, 'email_open', NULL, NULL, "
                    "%%s::timestamp - mod(id, 5) * interval '3 days' FROM %s WHERE mod(id, %d) = %d"
                    % (self.q('email_event'), self.q('lead'), m, r), (lsref.us_to_ts_literal(self.rand_time()),))
        elif v == 2:
            ids = self.sample(self.event_ids('email_event'), rng.randint(1, 10))
            # timestamp -> timestamptz through AT TIME ZONE 'UTC' (the same instant as leadscore reads it)
            self.ex("INSERT INTO %s (lead_id, type, url, amount, occurred_at) SELECT lead_id, 'page_view', "
                    "'/pricing', NULL, sent_at AT TIME ZONE 'UTC' FROM %s WHERE id = ANY(%%s)"
                    % (self.q('web_event'), self.q('email_event')), (ids,))
        elif v == 3:
            ids = self.sample(self.event_ids('web_event'), rng.randint(1, 10))
            self.ex("INSERT INTO %s (lead_id, kind) SELECT lead_id, CASE WHEN mod(id, 2) = 0 THEN 'call' "
                    "ELSE 'meeting' END FROM %s WHERE id = ANY(%%s)" % (self.q('note'), self.q('web_event')), (ids,))
        else:
            n = rng.randint(5, 60)
            lo = rng.randint(1, LEAD_KEYS)
            self.ex("INSERT INTO %s (lead_id, type, url, amount, occurred_at) SELECT %d + mod(g, 17), "
                    "(ARRAY['page_view', 'webinar', 'demo_request', 'download'])[1 + mod(g, 4)], "
                    "CASE WHEN mod(g, 3) = 0 THEN '/pricing' ELSE '/white-paper/x' END, NULL, "
                    "%%s::timestamptz - g * interval '37 hours' FROM generate_series(1, %d) g"
                    % (self.q('web_event'), lo, n), (lsref.us_to_tstz_literal(self.rand_time()),))

    def copy_data(self, t, n, bad=False):
        rows = []
        for i in range(n):
            row = self.row_params(t, self.make_row(t))
            if bad and i == n - 1:
                row[-1] = None            # NOT NULL time column: COPY fails on its last row
            rows.append(row)
        return csv_data(rows)

    def op_copy(self, bad=False):
        t = self.rng.choice(['web_event', 'email_event', 'contact_event'] if bad else
                            ['web_event', 'email_event', 'note', 'contact_event'])
        n = self.rng.randint(1, 80)
        self.copy('COPY %s (%s) FROM STDIN WITH (FORMAT csv)' % (self.q(t), ', '.join(self.EVENT_COLS[t])),
                  self.copy_data(t, n, bad))

    def op_update_event(self):
        rng = self.rng
        t = self.pick_event_table()
        ids = self.event_ids(t)
        if not ids:
            return
        sel = self.sample(ids, rng.choice([1, 1, 2, 5, 20]))
        tcol = self.EVENT_COLS[t][-1] if t != 'note' else None
        lcol = self.EVENT_COLS[t][0]
        newkey = self.pick_contact() if t == 'contact_event' else self.pick_lead()
        v = rng.randrange(7)
        if v == 0 and self.citus:   # move to another lead: Citus cannot update a distribution column
            self.move_rows(t, 'id = ANY(%s)', [sel], '%s', [newkey])
        elif v == 0:   # move to another lead (possibly unknown or NULL)
            self.ex('UPDATE %s SET %s = %%s WHERE id = ANY(%%s)' % (self.q(t), lcol), (newkey, sel))
        elif v == 1:   # change type
            row = self.make_row(t)
            if t == 'note':
                self.ex('UPDATE %s SET kind = %%s WHERE id = ANY(%%s)' % self.q(t), (row[1], sel))
            elif t == 'contact_event':
                self.ex('UPDATE %s SET type = %%s WHERE id = ANY(%%s)' % self.q(t), (row[1], sel))
            else:
                self.ex('UPDATE %s SET type = %%s, url = %%s, amount = %%s WHERE id = ANY(%%s)' % self.q(t),
                        (row[1], row[2], row[3], sel))
        elif v == 2 and tcol:   # set a new time (out of order)
            lit = lsref.us_to_ts_literal if t == 'email_event' else lsref.us_to_tstz_literal
            self.ex('UPDATE %s SET %s = %%s WHERE id = ANY(%%s)' % (self.q(t), tcol), (lit(self.rand_time()), sel))
        elif v == 3 and tcol and self.citus and t != 'email_event':
            # Citus refuses STABLE functions of columns in an UPDATE (timestamptz + interval): one new time
            self.ex('UPDATE %s SET %s = %%s WHERE %s = %%s' % (self.q(t), tcol, lcol),
                    (lsref.us_to_tstz_literal(self.rand_time()), newkey))
        elif v == 3 and tcol:   # shift the times of all the events of a lead
            self.ex("UPDATE %s SET %s = %s + %%s * interval '1 hour' WHERE %s = %%s" % (self.q(t), tcol, tcol, lcol),
                    (rng.randint(-24 * 400, 24 * 10), newkey))
        elif v == 4:   # no-op update
            self.ex('UPDATE %s SET %s = %s WHERE id = ANY(%%s)' % (self.q(t), lcol, lcol), (sel,))
        elif v == 5 and tcol:   # everything at once, one row
            row = self.row_params(t, self.make_row(t))
            cols = self.EVENT_COLS[t]
            if self.citus:   # (not the lead: a distribution column)
                row, cols = row[1:], cols[1:]
            self.ex('UPDATE %s SET %s WHERE id = %%s' % (self.q(t), ', '.join('%s = %%s' % c for c in cols)),
                    row + [sel[0]])
        elif self.citus:   # swap the events of two leads: one statement that deletes and inserts them
            a = newkey
            b = self.pick_contact() if t == 'contact_event' else self.pick_lead()
            if a == b:
                return
            self.move_rows(t, '%s IN (%%s, %%s)' % lcol, [a, b], 'CASE WHEN lead = %s THEN %s ELSE %s END',
                           [a, b, a])
        else:          # swap the events of two leads
            a = newkey
            b = self.pick_contact() if t == 'contact_event' else self.pick_lead()
            if a is None or b is None or a == b:
                return
            self.ex('UPDATE %s SET %s = CASE WHEN %s = %%s THEN %%s ELSE %%s END WHERE %s IN (%%s, %%s)'
                    % (self.q(t), lcol, lcol, lcol), (a, b, a, a, b))

    def move_rows(self, t, where, params, new_lead, lead_params):
        """Citus: rows of table t moved to other leads (or a lead's key changed) the way Citus allows, a DELETE
        and an INSERT in one statement; new_lead is an SQL expression of the old key, `lead`."""
        cols = (['id', 'industry', 'employees', 'country', 'email', 'name'] if t == 'lead' else
                ['email', 'company', 'employees'] if t == 'contact' else list(self.EVENT_COLS[t]))
        key, rest = cols[0], ', '.join(cols[1:])
        self.ex('WITH d AS (DELETE FROM %s WHERE %s RETURNING %s AS lead, %s) INSERT INTO %s (%s, %s) SELECT %s, %s FROM d'
                % (self.q(t), where, key, rest, self.q(t), key, rest, new_lead, rest), params + lead_params)

    def op_delete_event(self):
        rng = self.rng
        t = self.pick_event_table()
        v = rng.randrange(4)
        lcol = self.EVENT_COLS[t][0]
        if v == 0:
            ids = self.sample(self.event_ids(t), rng.choice([1, 1, 3, 10]))
            self.ex('DELETE FROM %s WHERE id = ANY(%%s)' % self.q(t), (ids,))
        elif v == 1:
            key = self.pick_contact() if t == 'contact_event' else self.pick_lead()
            self.ex('DELETE FROM %s WHERE %s = %%s' % (self.q(t), lcol), (key,))
        elif v == 2:
            self.ex('DELETE FROM %s WHERE id %% %d = %d' % (self.q(t), rng.randint(7, 20), rng.randint(0, 6)))
        else:   # the latest event of a lead (its last activity)
            if t == 'note':
                return
            key = self.pick_contact() if t == 'contact_event' else self.pick_lead()
            tcol = self.EVENT_COLS[t][-1]
            self.ex('DELETE FROM %s WHERE id IN (SELECT id FROM %s WHERE %s = %%s ORDER BY %s DESC, id DESC LIMIT 1)'
                    % (self.q(t), self.q(t), lcol, tcol), (key,))

    def op_cte(self):
        rng = self.rng
        if rng.random() < 0.5:
            ids = self.sample(self.event_ids('email_event'), rng.randint(1, 6))
            self.ex("WITH d AS (DELETE FROM %s WHERE id = ANY(%%s) RETURNING lead_id, type, url, amount, sent_at) "
                    "INSERT INTO %s (lead_id, type, url, amount, occurred_at) "
                    "SELECT lead_id, type, url, amount, sent_at AT TIME ZONE 'UTC' FROM d"
                    % (self.q('email_event'), self.q('web_event')), (ids,))
        else:
            keys = self.sample(self.lead_keys(), 2)
            self.ex("WITH u AS (UPDATE %s SET employees = 250, industry = 'Technology' WHERE id = ANY(%%s) RETURNING id) "
                    "INSERT INTO %s (lead_id, type, url, amount, occurred_at) SELECT id, 'demo_request', NULL, NULL, "
                    "%%s FROM u" % (self.q('lead'), self.q('web_event')),
                    (keys, lsref.us_to_tstz_literal(self.rand_time())))

    def op_same_table(self):
        """One statement that fires several triggers of one event table, on the same leads: an upsert that
        moves rows to a lead and adds rows for it (the UPDATE's trigger, then the INSERT's), a MERGE that
        updates, deletes and inserts, a WITH query updating and inserting, a reset and events in one WITH. The
        email rules include one capped per day, whose leads are rebuilt from the table."""
        rng = self.rng
        t = 'email_event'
        cols = self.EVENT_COLS[t]
        ids = self.sample(self.event_ids(t), rng.randint(1, 4))
        lead = self.pick_lead()
        v = rng.randrange(4)
        if v == 0 or not ids:
            rows = []
            for i in ids:
                r = self.row_params(t, self.make_row(t))
                rows.append([i, lead] + r[1:])
            for _ in range(rng.randint(1, 3)):
                r = self.row_params(t, self.make_row(t))
                rows.append(['DEFAULT', lead if rng.random() < 0.7 else r[0]] + r[1:])
            values = ', '.join('(%s)' % ', '.join('DEFAULT' if x == 'DEFAULT' else '%s' for x in r) for r in rows)
            self.ex('INSERT INTO %s (id, %s) VALUES %s ON CONFLICT (id) DO UPDATE SET lead_id = EXCLUDED.lead_id, '
                    'type = EXCLUDED.type, sent_at = EXCLUDED.sent_at' % (self.q(t), ', '.join(cols), values),
                    [x for r in rows for x in r if x != 'DEFAULT'])
        elif v == 1:
            src, params = [], []
            for i in ids:
                src.append('(%s::bigint, %s::bigint, %s::text, %s::timestamp, %s::text)')
                r = self.row_params(t, self.make_row(t))
                params += [i, lead, r[1], r[4], rng.choice(['move', 'drop'])]
            r = self.row_params(t, self.make_row(t))
            src.append('(NULL::bigint, %s::bigint, %s::text, %s::timestamp, %s::text)')
            params += [lead, r[1], r[4], 'add']
            self.ex("MERGE INTO %s e USING (VALUES %s) v (id, lead_id, type, sent_at, what) ON e.id = v.id "
                    "WHEN MATCHED AND v.what = 'move' THEN UPDATE SET lead_id = v.lead_id, sent_at = v.sent_at "
                    "WHEN MATCHED THEN DELETE "
                    "WHEN NOT MATCHED THEN INSERT (lead_id, type, sent_at) VALUES (v.lead_id, v.type, v.sent_at)"
                    % (self.q(t), ', '.join(src)), params)
        elif v == 2:
            r = self.row_params(t, self.make_row(t))
            self.ex("WITH u AS (UPDATE %s SET sent_at = sent_at - interval '1 hour' WHERE id = ANY(%%s) RETURNING lead_id) "
                    "INSERT INTO %s (lead_id, type, sent_at) SELECT DISTINCT lead_id, %%s, %%s::timestamp FROM u"
                    % (self.q(t), self.q(t)), (ids, r[1], r[4]))
        elif not self.dry_run and lead is not None:
            r = self.row_params(t, self.make_row(t))
            at = self.base - rng.randint(0, 30 * US_PER_DAY)
            self.ex("WITH r AS (INSERT INTO leadscore.engagement_reset_int8 (model_id, lead, reset_at) SELECT id, %%s, %s "
                    "FROM leadscore.model WHERE name = %%s RETURNING lead) "
                    "INSERT INTO %s (lead_id, type, sent_at) SELECT lead, %%s, %%s::timestamp FROM r"
                    % (AS_OF_SQL, self.q(t)), (lead, at, rng.choice(sorted(m for m in self.models
                                                                           if self.models[m].key_type != 'text')),
                                             r[1], r[4]))

    def op_reset(self):
        """Engagement resets (1.2): recorded by leadscore.reset or a plain INSERT, or one deleted (undone)."""
        if self.dry_run:
            return
        rng = self.rng
        m = self.models[rng.choice(sorted(self.models))]
        contacts = m.key_type == 'text'
        table = 'leadscore.engagement_reset_%s' % ('text' if contacts else 'int8')
        v = rng.randrange(10)
        if v < 3:
            self.cur.execute('SELECT id FROM %s ORDER BY id' % table)
            ids = [r[0] for r in self.cur.fetchall()]
            if ids:
                self.ex('DELETE FROM %s WHERE id = %%s' % table, (rng.choice(ids),))
                return
        key = self.pick_contact() if contacts else self.pick_lead()
        if key is None:
            return
        # Never in the future: at most the time this run started (earlier than any transaction's time).
        at = self.base - rng.choice([0, rng.randint(0, 2 * US_PER_DAY), rng.randint(0, 400 * US_PER_DAY)])
        if v < 5:
            self.ex('SELECT leadscore.reset(%s, %s, ' + AS_OF_SQL + ', %s)', (m.name, str(key), at, 'test'))
        elif v < 6:
            self.ex('SELECT leadscore.reset(%s, %s)', (m.name, str(key)))
        else:
            self.ex('INSERT INTO %s (model_id, lead, reset_at) SELECT id, %%s, %s FROM leadscore.model WHERE name = %%s'
                    % (table, AS_OF_SQL), (key, at, m.name))

    def op_truncate(self):
        self.ex('TRUNCATE %s' % self.q(self.rng.choice(['note', 'contact_event'])))

    # -- partitions of web_event (1.5) ---------------------------------------------------------
    def init_parts(self):
        """self.parts: name -> parent, range (microseconds, lower bound included) or list of types, whether it is
        a default partition, whether it is partitioned itself; trange: the range its rows lie in (its parent's)."""
        day0 = self.base // US_PER_DAY * US_PER_DAY
        self.parts = {}
        for name, (parent, days, types, default, sub) in WEB_PARTS.items():
            rng_us = None if days is None else (day0 + days[0] * US_PER_DAY, day0 + days[1] * US_PER_DAY)
            self.parts[name] = dict(parent=parent, range=rng_us, types=types, default=default, sub=sub)
        for s in self.parts.values():
            s['trange'] = s['range'] or (self.parts[s['parent']]['range'] if s['parent'] != 'web_event' else None)

    def part_status(self):
        """The partitions' tables as they are now (the catalog follows rollbacks): name -> the table it is a
        partition of, or None for a table on its own (detached, or made apart to be attached); a table that
        does not exist is left out."""
        self.cur.execute("SELECT c.relname::text, p.relname::text FROM pg_class c "
                         "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent "
                         "WHERE c.relnamespace = %s::regnamespace AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')",
                         (SCHEMA, sorted(self.parts)))
        return dict(self.cur.fetchall())

    def under_web(self, name, st):
        """Whether table `name` is a partition of web_event, at any depth (its rows are then scored)."""
        while name != 'web_event':
            if st.get(name) != self.parts[name]['parent']:
                return False
            name = st[name]
        return True

    def part_tables(self, st, attached):
        """The tables of the partitions under web_event (attached) or not (detached, made apart)."""
        return sorted(n for n in st if self.under_web(n, st) == attached)

    @staticmethod
    def default_of(parent):
        return 'web_event_default' if parent == 'web_event' else 'web_event_mid_other'

    def bound_sql(self, name):
        s = self.parts[name]
        if s['default']:
            return 'DEFAULT'
        if s['range']:
            return "FOR VALUES FROM ('%s') TO ('%s')" % tuple(lsref.us_to_tstz_literal(x) for x in s['range'])
        return 'FOR VALUES IN (%s)' % ', '.join("'%s'" % t for t in s['types'])

    def bound_pred(self, name):
        """The rows of partition `name`'s bounds, among its parent's."""
        s = self.parts[name]
        if s['range']:
            return "occurred_at >= '%s' AND occurred_at < '%s'" % tuple(lsref.us_to_tstz_literal(x) for x in s['range'])
        return 'type IN (%s)' % ', '.join("'%s'" % t for t in s['types'])

    def fits(self, name, st):
        """(time_ok, type_ok, time range or None): the rows table `name` may hold, attached or not (a detached
        table's rows must fit its bounds when it is attached back; a default partition's, the bounds of no
        partition attached beside it)."""
        s = self.parts[name]
        if name == 'web_event_default':
            taken = [self.parts[n]['range'] for n, p in st.items() if p == 'web_event' and self.parts[n]['range']]
            return (lambda t: not any(lo <= t < hi for lo, hi in taken)), (lambda ty: True), None
        lo, hi = s['trange']
        if s['types']:
            type_ok = lambda ty: ty in s['types']
        elif s['default']:
            taken = {ty for n, p in st.items() if p == s['parent'] and self.parts[n]['types']
                     for ty in self.parts[n]['types']}
            type_ok = lambda ty: ty not in taken
        else:
            type_ok = lambda ty: True
        return (lambda t: lo <= t < hi), type_ok, (lo, hi)

    def part_time(self, time_ok, bounds):
        rng = self.rng
        if bounds and rng.random() < 0.15:
            return rng.choice([bounds[0], bounds[1] - 1])     # on a bound (the upper one is excluded)
        for _ in range(20):
            t = self.rand_time()
            if time_ok(t):
                return t
        if bounds:
            return rng.randint(bounds[0], bounds[1] - 1)
        t = self.base + rng.randint(30, 60) * US_PER_DAY    # after every range
        assert time_ok(t)
        return t

    def part_row(self, name, st):
        """A random web_event row that table `name` may hold: [lead, type, url, amount, time]."""
        time_ok, type_ok, bounds = self.fits(name, st)
        for _ in range(1000):
            row = self.web_row()
            if type_ok(row[1]):
                break
        else:
            raise Fail('no row type fits %s' % name)
        row[4] = self.part_time(time_ok, bounds)
        return row

    @staticmethod
    def web_params(row):
        return row[:4] + [lsref.us_to_tstz_literal(row[4])]

    def insert_into(self, name, st, n=None):
        """INSERT straight into table `name` (a partition, or a table apart), its columns named in any order."""
        rng = self.rng
        n = n or rng.choice([1, 1, 3, 10])
        cols = ['lead_id', 'type', 'url', 'amount', 'occurred_at']
        rng.shuffle(cols)
        rows = []
        for _ in range(n):
            r = dict(zip(WEB_COLS.split(', ')[1:], self.web_params(self.part_row(name, st))))
            rows += [r[c] for c in cols]
        self.ex('INSERT INTO %s (%s) VALUES %s' % (self.q(name), ', '.join(cols),
                                                  ', '.join(['(' + ', '.join(['%s'] * 5) + ')'] * n)), rows)

    def create_apart(self, name, cols=None):
        """Table `name` made on its own (to be attached): web_event's columns in a random order (`cols`), perhaps
        with one dropped."""
        rng = self.rng
        if cols is None:
            cols = list(WEB_COLUMNS)
            rng.shuffle(cols)
            if rng.random() < 0.6:
                cols.insert(rng.randint(0, len(cols)), ('junk', 'int'))
        self.ex('CREATE TABLE %s (%s)%s' % (self.q(name), ', '.join('%s %s' % c for c in cols),
                                             ' PARTITION BY LIST (type)' if self.parts[name]['sub'] else ''))
        if any(c == 'junk' for c, _ in cols):
            self.ex('ALTER TABLE %s DROP COLUMN junk' % self.q(name))

    def attach(self, name):
        """ATTACH PARTITION of table `name` to its parent. The rows of its bounds that its parent's default
        partition took meanwhile move into it first (PostgreSQL refuses the attach otherwise)."""
        parent = self.parts[name]['parent']
        dflt, pred = self.default_of(parent), self.bound_pred(name)
        self.cur.execute('SELECT count(*) FROM %s WHERE %s' % (self.q(dflt), pred))
        if self.cur.fetchone()[0]:
            self.ex('WITH m AS (DELETE FROM %s WHERE %s RETURNING %s) INSERT INTO %s (%s) SELECT %s FROM m'
                    % (self.q(dflt), pred, WEB_COLS, self.q(name), WEB_COLS, WEB_COLS))
        self.ex('ALTER TABLE %s ATTACH PARTITION %s %s' % (self.q(parent), self.q(name), self.bound_sql(name)))

    def create_children(self, name):
        """The partitions of the new partitioned table `name`: created as PARTITION OF it, or, for those left
        apart (detached before their parent was dropped), attached to it."""
        st = self.part_status()
        apart = []
        for n, s in self.parts.items():     # the default partition last
            if s['parent'] != name:
                continue
            if n in st:
                assert st[n] is None, (n, st)
                apart.append(n)
            else:
                self.ex('CREATE TABLE %s PARTITION OF %s %s' % (self.q(n), self.q(name), self.bound_sql(n)))
        for n in apart:
            self.attach(n)

    def create_part(self, name):
        """Partition `name` made again: CREATE TABLE ... PARTITION OF (when its parent's default partition holds no
        row of its bounds), or a table made apart, filled, and attached."""
        s = self.parts[name]
        self.cur.execute('SELECT count(*) FROM %s WHERE %s'
                         % (self.q(self.default_of(s['parent'])), self.bound_pred(name)))
        taken = self.cur.fetchone()[0]
        if not taken and self.rng.random() < 0.6:
            self.ex('CREATE TABLE %s PARTITION OF %s %s%s' % (self.q(name), self.q(s['parent']), self.bound_sql(name),
                                                              ' PARTITION BY LIST (type)' if s['sub'] else ''))
            if s['sub']:
                self.create_children(name)
            return
        self.create_apart(name)
        if s['sub']:
            self.create_children(name)
        if self.rng.random() < 0.6:
            self.insert_into(name, self.part_status())
        self.attach(name)

    def setup_partitions(self):
        """web_event made again, partitioned (the reference reads it as any table). Its key holds the partition
        keys of both levels (PostgreSQL requires it)."""
        q = self.q
        self.ex('DROP TABLE %s' % q('web_event'))
        self.ex('CREATE TABLE %s (id bigserial, lead_id bigint, type text NOT NULL, url text, amount numeric(12,2), '
                'occurred_at timestamptz NOT NULL, PRIMARY KEY (id, occurred_at, type)) '
                'PARTITION BY RANGE (occurred_at)' % q('web_event'))
        self.ex('CREATE INDEX ON %s (lead_id)' % q('web_event'))
        for name in ('web_event_old', 'web_event_mid', 'web_event_default'):
            sub = ' PARTITION BY LIST (type)' if self.parts[name]['sub'] else ''
            self.ex('CREATE TABLE %s PARTITION OF %s %s%s' % (q(name), q('web_event'), self.bound_sql(name), sub))
        self.create_children('web_event_mid')
        # web_event_new: made apart, its columns in another order and one dropped; attached once the models exist.
        cols = dict(WEB_COLUMNS, junk='int')
        self.create_apart('web_event_new', [(c, cols[c]) for c in
                                            ('occurred_at', 'junk', 'amount', 'type', 'id', 'url', 'lead_id')])

    # -- operations on partitions (1.5) --------------------------------------------------------
    def op_partition_dml(self):
        """INSERT (columns named in any order, or none: the table's own order), COPY, UPDATE, DELETE, INSERT ... ON
        CONFLICT DO UPDATE straight into one partition of web_event (a leaf, or the partitioned one below it), rows
        within its bounds; now and then into a detached table (not scored: its rows are when it is attached)."""
        rng = self.rng
        st = self.part_status()
        apart = self.part_tables(st, False)
        attached = self.part_tables(st, True)
        name = rng.choice(apart) if apart and rng.random() < 0.15 else rng.choice(attached)
        qn = self.q(name)
        time_ok, type_ok, bounds = self.fits(name, st)
        v = rng.choices(range(8), [3, 2, 2, 4, 2, 2, 2, 1])[0]
        ids = self.fetch_col('SELECT id FROM %s ORDER BY id' % qn) if v >= 3 else []
        if v >= 3 and not ids:
            v = 0
        if v == 6 and name not in attached:   # (ON CONFLICT needs the key, which a table made apart lacks)
            v = 0
        if v == 0:
            self.insert_into(name, st)
        elif v == 1:   # no column list: the values in the table's own column order
            self.cur.execute('SELECT attname::text FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 '
                             'AND NOT attisdropped ORDER BY attnum', (qn,))
            order = [r[0] for r in self.cur.fetchall()]
            n = rng.choice([1, 2, 6])
            params = []
            for _ in range(n):
                r = dict(zip(WEB_COLS.split(', ')[1:], self.web_params(self.part_row(name, st))))
                params += [r[c] for c in order if c != 'id']
            ph = '(' + ', '.join('DEFAULT' if c == 'id' else '%s' for c in order) + ')'
            self.ex('INSERT INTO %s VALUES %s' % (qn, ', '.join([ph] * n)), params)
        elif v == 2:
            rows = [self.web_params(self.part_row(name, st)) for _ in range(rng.randint(1, 40))]
            self.copy('COPY %s (lead_id, type, url, amount, occurred_at) FROM STDIN WITH (FORMAT csv)' % qn,
                      csv_data(rows))
        elif v == 3:   # its lead, its type (within the bounds), its time (within the bounds)
            sel = self.sample(ids, rng.choice([1, 1, 2, 5, 20]))
            what = self.sample(['lead', 'type', 'time'], rng.randint(1, 3))
            sets, params = [], []
            if 'lead' in what:
                sets.append('lead_id = %s')
                params.append(self.pick_lead())
            if 'type' in what:
                row = self.part_row(name, st)
                sets.append('type = %s, url = %s, amount = %s')
                params += row[1:4]
            if 'time' in what:
                sets.append('occurred_at = %s')
                params.append(lsref.us_to_tstz_literal(self.part_time(time_ok, bounds)))
            self.ex('UPDATE %s SET %s WHERE id = ANY(%%s)' % (qn, ', '.join(sets)), params + [sel])
        elif v == 4:
            self.ex('DELETE FROM %s WHERE id = ANY(%%s)' % qn, (self.sample(ids, rng.choice([1, 1, 3, 10])),))
        elif v == 5:
            if rng.random() < 0.5:
                self.ex('DELETE FROM %s WHERE lead_id = %%s' % qn, (self.pick_lead(),))
            else:
                self.ex('DELETE FROM %s WHERE id %% %d = %d' % (qn, rng.randint(3, 12), rng.randint(0, 2)))
        elif v == 6:   # rows already there (their key: id, time, type) take another lead, url, amount; new rows go in
            self.cur.execute('SELECT id, type, %s FROM %s WHERE id = ANY(%%s) ORDER BY id'
                             % (lsref.epoch_us_sql('occurred_at'), qn), (self.sample(ids, rng.randint(1, 5)),))
            rows = []
            for i, ty, at in self.cur.fetchall():
                rows.append([i, self.pick_lead(), ty, rng.choice(WEB_URLS + [None]), rng.choice([None, 1000]),
                             lsref.us_to_tstz_literal(at)])
            for _ in range(rng.randint(0, 3)):
                rows.append([None] + self.web_params(self.part_row(name, st)))
            rng.shuffle(rows)
            vals = ', '.join('(%s, %%s, %%s, %%s, %%s, %%s)' % ('DEFAULT' if r[0] is None else '%s') for r in rows)
            self.ex('INSERT INTO %s (%s) VALUES %s ON CONFLICT (id, occurred_at, type) DO UPDATE SET '
                    'lead_id = EXCLUDED.lead_id, url = EXCLUDED.url, amount = EXCLUDED.amount' % (qn, WEB_COLS, vals),
                    [x for r in rows for x in (r[1:] if r[0] is None else r)])
        else:          # an update through the partition that leaves the rows as they are
            self.ex('UPDATE %s SET lead_id = lead_id WHERE id = ANY(%%s)' % qn, (self.sample(ids, 10),))

    def op_partition_move(self):
        """UPDATEs through web_event (or through web_event_mid) that move rows from a partition to others."""
        rng = self.rng
        st = self.part_status()
        attached = self.part_tables(st, True)
        src = rng.choice([n for n in attached if not self.parts[n]['sub']])
        ids = self.fetch_col('SELECT id FROM %s ORDER BY id' % self.q(src))
        if not ids:
            return
        sel = self.sample(ids, rng.choice([1, 2, 4, 12]))
        v = rng.randrange(4)
        others = [n for n in attached if n != src]
        if v == 0 and others:   # into another partition (its time, and its type if it takes some types only)
            dst = rng.choice(others)
            row = self.part_row(dst, st)
            self.ex('UPDATE %s SET occurred_at = %%s, type = %%s, url = %%s, amount = %%s WHERE id = ANY(%%s)'
                    % self.q('web_event'), [lsref.us_to_tstz_literal(row[4])] + row[1:4] + [sel])
        elif v <= 1:   # into two partitions by range, some rows perhaps staying
            times = []
            for _ in range(2):
                dst = rng.choice([n for n in attached if self.parts[n]['range'] or n == 'web_event_default'])
                time_ok, _, bounds = self.fits(dst, st)
                times.append(lsref.us_to_tstz_literal(self.part_time(time_ok, bounds)))
            self.ex('UPDATE %s SET occurred_at = CASE WHEN id %%%% 2 = 0 THEN %%s::timestamptz '
                    'ELSE %%s::timestamptz END WHERE id = ANY(%%s)' % self.q('web_event'), times + [sel])
        elif v == 2:   # shifted (across a bound, or not)
            self.ex("UPDATE %s SET occurred_at = occurred_at + %%s * interval '1 hour' WHERE id = ANY(%%s)"
                    % self.q('web_event'), (rng.randint(-24 * 200, 24 * 60), sel))
        elif 'web_event_mid' in attached:   # a new type through the partitioned partition: to another of its own
            mids = self.fetch_col('SELECT id FROM %s ORDER BY id' % self.q('web_event_mid'))
            row = self.web_row()
            self.ex('UPDATE %s SET type = %%s, url = %%s, amount = %%s WHERE id = ANY(%%s)' % self.q('web_event_mid'),
                    row[1:4] + [self.sample(mids, rng.choice([1, 3, 10]))])

    def partition_ddl(self, acts):
        """One of acts [(what, partition, weight)]: TRUNCATE of a partition; ALTER TABLE ... DETACH PARTITION (attached
        back at once, at times), DROP TABLE of a partition; ATTACH PARTITION of a detached table, DROP of one; a
        dropped partition made again (CREATE TABLE ... PARTITION OF, or made apart and attached)."""
        rng = self.rng
        what, name, _ = rng.choices(acts, [a[2] for a in acts])[0]
        self.ddl_counts[what] = self.ddl_counts.get(what, 0) + 1
        if what == 'truncate':
            self.ex('TRUNCATE %s' % self.q(name))
        elif what == 'detach':
            self.ex('ALTER TABLE %s DETACH PARTITION %s' % (self.q(self.parts[name]['parent']), self.q(name)))
            if rng.random() < 0.3:   # attached back at once, perhaps after writes into it
                if rng.random() < 0.5:
                    self.insert_into(name, self.part_status())
                self.attach(name)
        elif what in ('drop', 'drop_apart'):
            self.ex('DROP TABLE %s' % self.q(name))
            if what == 'drop' and rng.random() < 0.3:   # made again at once
                self.create_part(name)
        elif what == 'attach':
            self.attach(name)
        else:
            self.create_part(name)

    def restore_acts(self, st):
        """The detached and dropped partitions brought back (far more often than they go)."""
        acts = []
        for n in MOVABLE_PARTS:
            parent = self.parts[n]['parent']
            if st.get(n) == parent or not (parent == 'web_event' or parent in st):
                continue
            acts += [('attach', n, 4.0), ('drop_apart', n, 0.5)] if n in st else [('create', n, 4.0)]
        return acts

    def op_partition_ddl(self):
        """DDL on one leaf partition of web_event (at either level): TRUNCATE, DETACH, DROP; or a partition detached
        or dropped (a leaf, or web_event_mid) attached back or made again."""
        st = self.part_status()
        acts = self.restore_acts(st)
        for n in MOVABLE_PARTS + ['web_event_default', 'web_event_mid_other']:
            if self.parts[n]['sub'] or not self.under_web(n, st):
                continue
            acts.append(('truncate', n, 0.1))
            if n in MOVABLE_PARTS:
                acts += [('detach', n, 0.6), ('drop', n, 0.15)]
        self.partition_ddl(acts)

    def op_subpartition_ddl(self):
        """DDL on the partitioned partition web_event_mid (the rows of several leaves leave at once): TRUNCATE,
        DETACH, DROP; or attached back, made again."""
        st = self.part_status()
        if self.under_web('web_event_mid', st):
            acts = [('truncate', 'web_event_mid', 0.3), ('detach', 'web_event_mid', 1.0),
                    ('drop', 'web_event_mid', 0.2)]
        else:
            acts = [a for a in self.restore_acts(st) if a[1] == 'web_event_mid']
        if acts:
            self.partition_ddl(acts)

    def op_truncate_partitions(self):
        """TRUNCATE of several tables in one statement: two partitions of web_event, or one with another tracked
        table (note, in either order), or with a detached table."""
        rng = self.rng
        st = self.part_status()
        attached = self.part_tables(st, True)
        apart = self.part_tables(st, False)
        pick = self.sample(attached, 1)
        r = rng.random()
        if r < 0.4:
            pick = self.sample(attached, 2)
        elif r < 0.8 or not apart:
            pick.append('note')
        else:
            pick.append(rng.choice(apart))
        rng.shuffle(pick)
        self.ex('TRUNCATE %s' % ', '.join(self.q(n) for n in pick))

    # -- operations on leads -------------------------------------------------------------------
    def op_insert_leads(self):
        rng = self.rng
        n = rng.choice([1, 1, 3, 8])
        keys = [rng.randint(1, LEAD_KEYS) for _ in range(n)]
        rows = []
        for k in dict.fromkeys(keys):
            a = self.lead_attrs()
            rows += [k, a['industry'], a['employees'], a['country'], a['email'], a['name']]
        conflict = rng.choice(['DO NOTHING', 'DO NOTHING',
                               '(id) DO UPDATE SET industry = EXCLUDED.industry, employees = EXCLUDED.employees, '
                               'name = EXCLUDED.name'])
        self.ex('INSERT INTO %s (id, industry, employees, country, email, name) VALUES %s ON CONFLICT %s'
                % (self.q('lead'), ', '.join(['(%s, %s, %s, %s, %s, %s)'] * (len(rows) // 6)), conflict), rows)

    def op_update_leads(self):
        rng = self.rng
        keys = self.lead_keys()
        if not keys:
            return
        sel = self.sample(keys, rng.choice([1, 1, 2, 10]))
        a = self.lead_attrs()
        cols = self.sample(list(a), rng.randint(1, 3))
        self.ex('UPDATE %s SET %s WHERE id = ANY(%%s)' % (self.q('lead'), ', '.join('%s = %%s' % c for c in cols)),
                [a[c] for c in cols] + [sel])

    def op_update_lead_key(self):
        keys = self.lead_keys()
        if not keys:
            return
        free = sorted(set(range(1, LEAD_KEYS + 1)) - set(keys))
        n = self.rng.choice([1, 1, 3])
        new = self.sample(free, n)
        old = self.sample(keys, len(new))
        if not old:
            return
        case = ' '.join('WHEN %d THEN %d' % (o, k) for o, k in zip(old, new))
        if self.citus:
            self.move_rows('lead', 'id = ANY(%s)', [old], 'CASE lead %s END' % case, [])
            return
        self.ex('UPDATE %s SET id = CASE id %s END WHERE id = ANY(%%s)' % (self.q('lead'), case), (old,))

    def op_delete_leads(self):
        keys = self.lead_keys()
        sel = self.sample(keys, self.rng.choice([1, 1, 4]))
        self.ex('DELETE FROM %s WHERE id = ANY(%%s)' % self.q('lead'), (sel,))

    def op_merge(self):
        rng = self.rng
        rows = []
        for _ in range(rng.randint(1, 6)):
            a = self.lead_attrs()
            rows += [rng.randint(1, LEAD_KEYS), a['industry'], rng.choice([None, 120, 3000])]
        src = ', '.join(['(%s::bigint, %s::text, %s::int)'] * (len(rows) // 3))
        self.ex("MERGE INTO %s l USING (SELECT DISTINCT ON (id) * FROM (VALUES %s) v0(id, industry, employees)) v "
                "ON l.id = v.id WHEN MATCHED AND v.employees IS NULL THEN DELETE "
                "WHEN MATCHED THEN UPDATE SET industry = v.industry, employees = v.employees "
                "WHEN NOT MATCHED THEN INSERT (id, industry, employees, country, email, name) "
                "VALUES (v.id, v.industry, v.employees, 'US', 'm@gmail.com', 'Merged')" % (self.q('lead'), src), rows)

    def op_contacts(self):
        rng = self.rng
        keys = self.contact_keys()
        v = rng.randrange(4)
        if v == 0 or not keys:
            n = rng.randint(1, 4)
            rows = []
            for e in dict.fromkeys(rng.choice(CONTACTS) for _ in range(n)):
                rows += [e, rng.choice([None, 'Acme', 'Globex']), rng.choice([None, 20, 1500])]
            self.ex('INSERT INTO %s (email, company, employees) VALUES %s ON CONFLICT DO NOTHING'
                    % (self.q('contact'), ', '.join(['(%s, %s, %s)'] * (len(rows) // 3))), rows)
        elif v == 1:
            self.ex('UPDATE %s SET company = %%s, employees = %%s WHERE email = ANY(%%s)' % self.q('contact'),
                    (rng.choice([None, 'Initech']), rng.choice([None, 5, 5000]), self.sample(keys, rng.randint(1, 3))))
        elif v == 2:
            free = sorted(set(CONTACTS + GHOSTS) - set(keys))
            if free and self.citus:
                self.move_rows('contact', 'email = %s', [rng.choice(keys)], '%s', [rng.choice(free)])
            elif free:
                self.ex('UPDATE %s SET email = %%s WHERE email = %%s' % self.q('contact'),
                        (rng.choice(free), rng.choice(keys)))
        else:
            self.ex('DELETE FROM %s WHERE email = ANY(%%s)' % self.q('contact'), (self.sample(keys, rng.randint(1, 2)),))

    # -- configuration changes -----------------------------------------------------------------
    EXTRA_RULES = {
        PREFIX + 'saas': [
            lsref.rule('docs', 'web_event', "type = 'page_view' AND url LIKE '/docs%'", 2),
            lsref.rule('gb', 'lead', "country = 'GB'", -3, category='intent'),
            lsref.rule('bounce', 'email_event', "type = 'bounce'", -4, cap=8.0, category='negative'),
        ],
        PREFIX + 'nodecay': [
            lsref.rule('memo', 'note', "kind = 'memo'", 1),
            lsref.rule('signup', 'web_event', "type = 'signup'", 3, once=True, category='mixed'),
        ],
        PREFIX + 'contacts': [
            lsref.rule('mid', 'contact', 'employees BETWEEN 10 AND 1000', 7),
        ],
    }

    def op_config(self, cur=None, cfg=None):
        """A random change of a model's configuration, applied to leadscore and to the test's copy `cfg`."""
        rng = self.rng
        cfg = cfg if cfg is not None else self.pending
        m = cfg[rng.choice(sorted(cfg))]
        r = rng.choice(m.rules)
        v = rng.randrange(11)
        where = ' WHERE model = %s AND name = %s'
        if v == 0:
            r['points'] = float(rng.choice([-25, -5, 0, 1, 2.5, 7, 12, 30]))
            self.ex('UPDATE leadscore.rule SET points = %s' + where, (r['points'], m.name, r['name']), cur)
        elif v == 1:
            r['enabled'] = not r['enabled']
            self.ex('UPDATE leadscore.rule SET enabled = %s' + where, (r['enabled'], m.name, r['name']), cur)
        elif v == 2:
            r['cap'] = rng.choice([None, 5.0, 15.0, 50.0])
            self.ex('UPDATE leadscore.rule SET cap = %s' + where, (r['cap'], m.name, r['name']), cur)
        elif v == 3:
            r['category'] = rng.choice([None] + sorted(m.categories))
            self.ex('UPDATE leadscore.rule SET category = %s' + where, (r['category'], m.name, r['name']), cur)
        elif v == 4 and r['source'] != m.lead_table and (r.get('per') or (r['source'] != 'note' and not r['once']
                                                                           and rng.random() < 0.3)):
            # A frequency cap changed, removed or added (1.2; event tables with a time column, not once per lead).
            r['per'] = rng.choice([None, (1, '1 hour'), (1, '1 day'), (2, '1 day'), (1, '7 days'), (3, '30 days')])
            per = r['per'] or (None, None)
            self.ex('UPDATE leadscore.rule SET max_per_period = %s, period = %s::interval' + where,
                    (per[0], per[1], m.name, r['name']), cur)
        elif v == 4 and r['source'] != m.lead_table:
            r['once'] = not r['once']
            self.ex('UPDATE leadscore.rule SET once_per_lead = %s' + where, (r['once'], m.name, r['name']), cur)
        elif v == 5:
            names = {x['name'] for x in m.rules}
            extra = [x for x in self.EXTRA_RULES[m.name] if x['name'] not in names]
            if extra:
                x = dict(rng.choice(extra))
                if x['category'] is not None and x['category'] not in m.categories:
                    x['category'] = None
                m.rules.append(x)
                self.ex(*m.insert_rule_sql(x), cur=cur)
            else:
                x = rng.choice(self.EXTRA_RULES[m.name])
                m.rules = [y for y in m.rules if y['name'] != x['name']]
                self.ex('DELETE FROM leadscore.rule' + where, (m.name, x['name']), cur)
        elif v == 6 and m.categories:
            c = rng.choice(sorted(m.categories))
            m.categories[c] = [rng.choice([0.1, 0.5, 1.0, 2.0]), rng.choice([None, 3.0, 10.0, 30.0])]
            self.ex('UPDATE leadscore.category SET weight = %s, cap = %s WHERE model = %s AND name = %s',
                    (m.categories[c][0], m.categories[c][1], m.name, c), cur)
        elif v == 7:
            i = rng.randrange(len(m.stages))
            used = {s[1] for s in m.stages}
            new = round(rng.uniform(-10, 60), 1)
            if m.stages[i][1] != NEG_INF and new not in used:
                m.stages[i] = (m.stages[i][0], new)
                self.ex('UPDATE leadscore.stage SET min_score = %s WHERE model = %s AND name = %s',
                        (new, m.name, m.stages[i][0]), cur)
        elif v == 8:
            if m.half_life_days is not None:
                m.half_life_days = rng.choice([3, 7, 30, 90])
            fl = rng.choice([None, -40.0, -5.0, 0.0])
            ce = rng.choice([None, 20.0, 40.0, 100.0])
            m.floor, m.ceiling = fl, ce
            hl = None if m.half_life_days is None else '%d days' % m.half_life_days
            self.ex('UPDATE leadscore.model SET half_life = %s::interval, floor = %s, ceiling = %s WHERE name = %s',
                    (hl, fl, ce, m.name), cur)
        elif v == 9:
            # A new condition on the same table (a lead rule stays a lead rule).
            pool = {
                'web_event': ["type = 'webinar' OR url LIKE '%/pricing%'", "type = 'purchase' AND amount > 500"],
                'email_event': ["type = 'email_open' AND lead_id % 2 = 0", "type IN ('unsubscribe', 'bounce')"],
                'note': ["kind IS NULL", "kind <> 'memo'"],
                'lead': ["coalesce(employees, 0) >= 250", "email LIKE '%@acme.com' OR name = 'Carol'"],
                'contact': ["company = 'Acme'"],
                'contact_event': ["type <> 'visit'"],
            }
            r['condition'] = rng.choice(pool[r['source']])
            self.ex('UPDATE leadscore.rule SET condition = %s' + where, (r['condition'], m.name, r['name']), cur)
        else:
            r['points'] = float(rng.choice([-3, 4, 9]))
            r['cap'] = rng.choice([None, 6.0])
            self.ex('UPDATE leadscore.rule SET points = %s, cap = %s' + where, (r['points'], r['cap'], m.name,
                                                                                  r['name']), cur)

    # -- failing statements --------------------------------------------------------------------
    def op_fail(self):
        """A statement that fails (after leadscore's triggers have run, for some of them)."""
        rng = self.rng
        v = rng.randrange(6)
        if v == 4 and self.citus:   # (no partitions on Citus)
            v = 5
        if v == 0:     # the CRM's own AFTER trigger (fires after leadscore's) refuses the statement
            rows = [self.row_params('web_event', self.web_row()) for _ in range(rng.randint(1, 5))]
            rows.append([rng.randint(1, LEAD_KEYS), 'poison', None, None, lsref.us_to_tstz_literal(self.rand_time())])
            self.ex('INSERT INTO %s (lead_id, type, url, amount, occurred_at) VALUES %s'
                    % (self.q('web_event'), ', '.join(['(%s, %s, %s, %s, %s)'] * len(rows))), [x for r in rows for x in r])
        elif v == 1:   # same, through an UPDATE
            self.ex("UPDATE %s SET type = CASE WHEN id %% 3 = 0 THEN 'poison' ELSE type END, "
                    "occurred_at = occurred_at - interval '1 day'" % self.q('web_event'))
            self.ex("INSERT INTO %s (lead_id, type, occurred_at) VALUES (1, 'poison', now())" % self.q('web_event'))
        elif v == 2:   # duplicate key
            keys = self.lead_keys()
            k = keys[0] if keys else 1
            self.ex('INSERT INTO %s (id) VALUES (%%s), (%%s)' % self.q('lead'), (k, k))
        elif v == 3:   # COPY failing on its last row
            self.op_copy(bad=True)
        elif v == 4:   # a DDL failing once leadscore has read the rows of the partition it names (1.5)
            name = rng.choice(self.part_tables(self.part_status(), True))
            if rng.random() < 0.5:
                self.ex('ALTER TABLE %s DETACH PARTITION %s' % (self.q('note'), self.q(name)))   # note: not partitioned
            else:
                self.ex('DROP TABLE %s, %s.no_such_table' % (self.q(name), SCHEMA))
        else:          # an unrelated error later in the transaction
            self.ex('SELECT 1 / 0')
        raise Fail('statement did not fail')

    # -- batches -------------------------------------------------------------------------------
    OPS = [
        ('insert_rows', 30), ('insert_select', 6), ('copy', 5), ('update_event', 20), ('delete_event', 10),
        ('cte', 3), ('insert_leads', 6), ('update_leads', 6), ('update_lead_key', 3), ('delete_leads', 3),
        ('merge', 2), ('contacts', 6), ('config', 1.2), ('truncate', 0.25), ('reset', 4),
        ('partition_dml', 6), ('partition_move', 3), ('partition_ddl', 2), ('subpartition_ddl', 0.7),
        ('truncate_partitions', 0.15), ('same_table', 3),
    ]

    def random_op(self):
        ops = [o for o in self.OPS if o[0] not in self.skip and (o[0] != 'config' or self.configurable)]
        name = self.rng.choices([o[0] for o in ops], [o[1] for o in ops])[0]
        self.op_counts[name] = self.op_counts.get(name, 0) + 1
        self.ops_done += 1
        if name == 'config' and self.dry_run:
            # Without the extension only the reference's copy changes.
            self.ex = lambda *a, **k: None
            try:
                self.op_config()
            finally:
                del self.ex
            return
        getattr(self, 'op_' + name)()

    def expect_failure(self):
        try:
            self.op_fail()
        except psycopg2.Error as e:
            self._log('-- expected error: %s' % str(e).strip().splitlines()[0])
            return
        raise Fail('a statement expected to fail succeeded')

    def snapshot(self, as_of):
        out = {}
        for name, m in self.models.items():
            out[name] = lsref.db_scores(self.cur, name, as_of)[0]
        return out

    def run_batch(self, bno):
        rng = self.rng
        self.batch_log = []
        self._log('-- seed %d batch %d' % (self.seed, bno))
        self.pending = {k: m.copy() for k, m in self.models.items()}
        mode = rng.choices(['txn', 'autocommit', 'rollback', 'savepoint', 'config2'], [45, 25, 12, 12, 6])[0]
        if self.dry_run and mode == 'config2':
            mode = 'txn'
        self.configurable = True
        if self.citus:
            # Through the coordinator (half the batches) or a worker, where a configuration change is refused.
            node = rng.choice([0, 0] + list(range(1, len(self.nodes))))
            self.conn, self.cur = self.nodes[node]
            self._log('-- on node %d' % node)
            self.configurable = node == 0
            if node == 0:
                # A configuration change must come before a transaction's other statements on the cluster
                # unless it runs its multi-shard statements on one connection per node (docs/operations.md).
                seq = 'sequential' if mode != 'autocommit' or rng.random() < 0.5 else 'parallel'
                self.cur.execute("SELECT set_config('citus.multi_shard_modify_mode', %s, false)", (seq,))
                self.conn.commit()
                self._log("SET citus.multi_shard_modify_mode = %s;" % seq)
        k = rng.randint(1, 12)
        before = None
        if mode == 'rollback' and not self.dry_run:
            fixed = self.base + rng.randint(-30, 30) * US_PER_DAY
            before = self.snapshot(fixed)
            self.conn.rollback()
        self._log('-- mode %s' % mode)
        # The trigger's two ways to the state rows (by primary key, or by SQL statements) must agree.
        direct = 'on' if rng.random() < 0.8 else 'off'
        if not self.dry_run:
            self.cur.execute("SELECT set_config('leadscore.direct_state_access', %s, false)", (direct,))
        self._log("SET leadscore.direct_state_access = %s;" % direct)
        if mode == 'txn':
            for _ in range(k):
                self.random_op()
            self.commit()
            self.models = self.pending
        elif mode == 'autocommit':
            for _ in range(k):
                self.random_op()
                self.commit()
                self.models = {n: m.copy() for n, m in self.pending.items()}
        elif mode == 'rollback':
            for _ in range(k):
                self.random_op()
            if rng.random() < 0.3 and not self.dry_run and self.configurable:
                self.op_config()
            if rng.random() < 0.8:
                self.expect_failure()
            self.rollback()
            self.pending = None
            if before is not None:
                after = self.snapshot(fixed)
                self.conn.rollback()
                bad = []
                for name in self.models:
                    bad += lsref.compare(after[name], before[name], self.models[name].check_grade(),
                                         label='%s after rollback vs before' % name)
                self.record(bad, 'rollback leaves scores unchanged')
        elif mode == 'savepoint':
            for _ in range(rng.randint(0, 4)):
                self.random_op()
            self.ex('SAVEPOINT sp')
            saved = {n: m.copy() for n, m in self.pending.items()}
            for _ in range(k):
                self.random_op()
            if rng.random() < 0.3 and not self.dry_run and self.configurable:
                self.op_config()
            if rng.random() < 0.8:
                self.expect_failure()
            self.ex('ROLLBACK TO SAVEPOINT sp')
            self.pending = saved
            for _ in range(rng.randint(0, 4)):
                self.random_op()
            self.commit()
            self.models = self.pending
        else:   # configuration change from another session (its cache, then ours, must follow)
            self.conn.rollback()
            self._log('-- on the second connection:')
            self.ops_done += 1
            self.op_counts['config2'] = self.op_counts.get('config2', 0) + 1
            self.op_config(cur=self.cur2, cfg=self.models)
            self.pending = {n: m.copy() for n, m in self.models.items()}
            for _ in range(rng.randint(0, 3)):
                self.random_op()
            self.commit()
            self.models = self.pending

    # -- checks --------------------------------------------------------------------------------
    def record(self, bad, what):
        """One check, which holds when `bad` (the differences found, as lines) is empty; the differences of
        the first 3 failing batches are printed. Returns whether it failed."""
        checks.check('seed %d: %s' % (self.seed, what), not bad, bad if self.failing_batches < 3 else None,
                     max_lines=MAX_DETAIL)
        return bool(bad)

    def check(self, bno):
        rng = self.rng
        if self.citus:
            self.conn, self.cur = self.coordinator
        cur = self.cur
        now = lsref.db_now_us(cur)
        times = self.fetch_col('SELECT %s FROM %s UNION ALL SELECT %s FROM %s ORDER BY 1' % (
            lsref.epoch_us_sql('occurred_at'), self.q('web_event'), lsref.epoch_us_sql('sent_at'),
            self.q('email_event')))
        as_ofs = [('now', now),
                  ('past', self.base - rng.randint(0, 365 * US_PER_DAY)),
                  ('future', now + rng.randint(US_PER_DAY, 400 * US_PER_DAY))]
        if times:
            as_ofs.append(('event time', rng.choice(times)))
        if bno % 10 == 0:
            as_ofs.append(('far past', self.base - 20 * 365 * US_PER_DAY))
        raws = {name: lsref.fetch_raw(cur, m) for name, m in self.models.items()}
        refs = {(name, label): lsref.reference_scores(m, raws[name], t)
                for name, m in self.models.items() for label, t in as_ofs}
        any_bad = False
        # The Python reference against its SQL formulation (a check of the test itself). On a Citus cluster, the
        # SQL reference reads copies of the CRM's rows on the coordinator, made in this transaction (the same
        # rows, read through Citus once: its query of many subqueries over distributed tables takes 0.2 s).
        sql_models, resets_table = self.models, 'leadscore.engagement_resets'
        if self.citus:
            sql_models = {}
            for name, m in self.models.items():
                sql_models[name] = m.copy()
                sql_models[name].schema = 'pg_temp'
            for t in sorted({t for m in self.models.values() for t in [m.lead_table] + [e[0] for e in m.event_tables]}):
                cur.execute('CREATE TEMP TABLE %s ON COMMIT DROP AS SELECT * FROM %s' % (t, self.q(t)))
            cur.execute('CREATE TEMP TABLE resets ON COMMIT DROP AS SELECT * FROM leadscore.engagement_resets')
            resets_table = 'pg_temp.resets'
        for name, m in self.models.items():
            for label, t in as_ofs:
                sql = lsref.sql_reference_scores(cur, sql_models[name], t, resets_table)
                bad = lsref.compare(sql, refs[(name, label)], m.check_grade(),
                                    label='%s SQL reference vs Python reference at %s (%d)' % (name, label, t))
                any_bad |= self.record(bad, 'reference self-check %s at %s' % (name, label))
        if self.dry_run:
            self.conn.rollback()
            return any_bad
        live = {}
        for name, m in self.models.items():
            for label, t in as_ofs:
                got, dups = lsref.db_scores(cur, name, t)
                live[(name, label)] = got
                bad = lsref.compare(got, refs[(name, label)], m.check_grade(), dups,
                                    label='%s live vs reference at %s (%d)' % (name, label, t))
                any_bad |= self.record(bad, 'scores_at(%s, %s) = reference' % (name, label))
        cur.execute('SAVEPOINT recompute')
        for name, m in self.models.items():
            cur.execute('SELECT leadscore.recompute(%s)', (name,))
            for label, t in as_ofs:
                got, dups = lsref.db_scores(cur, name, t)
                bad = lsref.compare(got, refs[(name, label)], m.check_grade(), dups,
                                    label='%s recompute vs reference at %s (%d)' % (name, label, t))
                any_bad |= self.record(bad, 'recompute then scores_at(%s, %s) = reference' % (name, label))
        cur.execute('ROLLBACK TO SAVEPOINT recompute')
        for name, m in self.models.items():
            label, t = rng.choice(as_ofs)
            ref = refs[(name, label)]
            bad = []
            for key in self.sample(sorted(ref), 3):
                bad += lsref.check_explain(cur, m, key, t, live[(name, label)].get(key), ref[key])
            any_bad |= self.record(bad, 'explain(%s, ..., %s)' % (name, label))
        self.conn.rollback()
        return any_bad

    # -- whole run -----------------------------------------------------------------------------
    def setup(self):
        cur = self.cur
        self.batch_log = []
        self._log('-- seed %d setup' % self.seed)
        self.ex('SET TimeZone = %s', (self.tz,))
        if not self.dry_run:
            self.ex('CREATE EXTENSION IF NOT EXISTS leadscore')
            self.ex('DELETE FROM leadscore.model WHERE name = ANY(%s)', ([m.name for m in self.models.values()],))
        for s in lsref.crm_ddl(SCHEMA):
            self.ex(s)
        if self.citus:   # Citus needs the distribution column in every unique key
            for t, lcol in (('web_event', 'lead_id'), ('email_event', 'lead_id'), ('note', 'lead_id'),
                            ('contact_event', 'contact_email')):
                self.ex('ALTER TABLE %s DROP CONSTRAINT %s_pkey, ADD PRIMARY KEY (%s, id)' % (self.q(t), t, lcol))
        else:
            self.setup_partitions()
        self.ex('''CREATE FUNCTION %s.poison_check() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF EXISTS (SELECT FROM new_rows WHERE type = 'poison') THEN
                    RAISE EXCEPTION 'poisoned event';
                END IF;
                RETURN NULL;
            END $$''' % SCHEMA)
        if not self.citus:   # (on Citus, once web_event is distributed)
            self.poison_triggers()
        self.commit()
        # Some data before the models exist (tracking starts with a recompute), the rest through the triggers.
        self.pending = {k: m.copy() for k, m in self.models.items()}
        for _ in range(6):
            self.op_insert_leads()
            self.op_insert_rows()
        self.op_contacts()
        for _ in range(3 * (not self.citus)):
            self.insert_into('web_event_new', self.part_status())
        self.commit()
        if not self.dry_run:
            for m in self.models.values():
                for sql, params in m.install_sql():
                    self.ex(sql, params)
            self.commit()
        if self.citus:
            # The tables distributed by lead, co-located with leadscore's (a procedure: outside a transaction).
            self.conn.autocommit = True
            # A model published with publish_concurrently (its states built for a draft, then swapped in) is
            # distributed as any other: distribute() refuses while the draft exists, and renumbers the states
            # as the model's own. The draft is unchanged: the references stay true.
            name = sorted(self.models)[0]
            self.cur.execute("SELECT leadscore.draft(%s, 'citus_draft')", (name,))
            try:
                self.cur.execute('CALL leadscore.distribute()')
                refused = None
            except psycopg2.Error as e:
                refused = str(e).strip().split('\n')[0]
            checks.check('seed %d: distribute() refuses a database with a draft' % self.seed,
                         refused is not None and 'is a draft' in refused, refused)
            self.cur.execute("CALL leadscore.publish_concurrently('citus_draft')")
            self.cur.execute("DELETE FROM leadscore.model WHERE name = 'citus_draft'")
            self.cur.execute('SELECT state_id <> id FROM leadscore.model WHERE name = %s', (name,))
            checks.check('seed %d: model %s publishes a draft concurrently before distribute() (its states swapped in)'
                         % (self.seed, name), self.cur.fetchone()[0])
            self._log('CALL leadscore.distribute();')
            self.cur.execute('CALL leadscore.distribute()')
            self.cur.execute('SELECT count(*) FROM leadscore.model WHERE state_id <> id')
            checks.check('seed %d: distribute() renumbers states swapped in as the model\'s own' % self.seed,
                         self.cur.fetchone()[0] == 0)
            self.conn.autocommit = False
            self.ex("SET citus.enable_unsafe_triggers = on")
            self.poison_triggers()
            self.commit()
        else:
            # The table made apart attached with its rows (scored as inserted), once the models track web_event.
            self.attach('web_event_new')
            self.commit()
        if not self.dry_run:
            # as_of in microseconds must reach leadscore exactly.
            cur.execute('SELECT ' + lsref.epoch_us_sql(AS_OF_SQL), (self.base + 123457,))
            assert cur.fetchone()[0] == self.base + 123457
            self.conn.rollback()

    def poison_triggers(self):
        """The CRM's own AFTER triggers on web_event, which refuse a statement with a 'poison' event."""
        for op in ('INSERT', 'UPDATE'):
            self.ex('CREATE TRIGGER zz_poison_%s AFTER %s ON %s REFERENCING NEW TABLE AS new_rows '
                    'FOR EACH STATEMENT EXECUTE FUNCTION %s.poison_check()'
                    % (op.lower(), op, self.q('web_event'), SCHEMA))

    def cleanup(self):
        try:
            self.conn.rollback()
            if not self.dry_run:
                lsref.drop_models(self.cur, self.models.values())
            self.cur.execute('DROP SCHEMA IF EXISTS %s CASCADE' % SCHEMA)
            self.conn.commit()
        finally:
            self.conn.close()
            self.conn2.close()

    def run(self):
        try:
            self.run_batches()
        finally:
            self.write_log()

    def run_batches(self):
        t0 = time.time()
        self.setup()
        bno = 0
        self.check(bno)
        while self.ops_done < self.nops:
            bno += 1
            try:
                self.run_batch(bno)
            except Exception:
                print('ERROR seed %d batch %d: unexpected exception; statements of the batch:' % (self.seed, bno))
                print('\n'.join(self.batch_log[-40:]))
                traceback.print_exc()
                checks.check('seed %d batch %d: no unexpected exception' % (self.seed, bno), False)
                break
            if self.check(bno):
                if self.failing_batches < 3:
                    print('  statements of seed %d batch %d (full log: %s; the same operations again: seed %d '
                          "--base '%s'):" % (self.seed, bno, self.log_path, self.seed,
                                             lsref.us_to_tstz_literal(self.base)))
                    print('    ' + '\n    '.join(self.batch_log[-60:]))
                self.failing_batches += 1
                if self.failing_batches >= 5:
                    print('seed %d: stopping after 5 failing batches' % self.seed)
                    break
        for c, _ in self.nodes:
            c.rollback()
        self.conn, self.cur = self.coordinator
        cur = self.cur
        self.conn.rollback()   # (after an unexpected exception, the transaction is aborted)
        counts = {}
        for t in ('lead', 'web_event', 'email_event', 'note', 'contact', 'contact_event'):
            cur.execute('SELECT count(*) FROM %s' % self.q(t))
            counts[t] = cur.fetchone()[0]
        st = self.part_status()
        parts = []
        for n in sorted(self.parts):
            if n not in st:
                parts.append('%s=dropped' % n[10:])
            elif not self.under_web(n, st):
                parts.append('%s=detached' % n[10:])
            elif not self.parts[n]['sub']:
                cur.execute('SELECT count(*) FROM %s' % self.q(n))
                parts.append('%s=%d' % (n[10:], cur.fetchone()[0]))
        self.conn.rollback()
        print('seed %d: %d operations in %d batches, %.1fs, TimeZone %s, final rows %s'
              % (self.seed, self.ops_done, bno, time.time() - t0, self.tz,
                 ' '.join('%s=%d' % kv for kv in counts.items())))
        print('  web_event partitions: ' + ' '.join(parts))
        print('  operations: ' + ' '.join('%s=%d' % kv for kv in sorted(self.op_counts.items())))
        print('  partition DDL: ' + ' '.join('%s=%d' % kv for kv in sorted(self.ddl_counts.items())))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('seeds', nargs='*', type=int, default=[1, 2, 3])
    ap.add_argument('--ops', type=int, default=2000, help='operations per seed (default 2000)')
    ap.add_argument('--dry-run', action='store_true', help='run operations and reference without the extension')
    ap.add_argument('--skip', action='append', default=[], metavar='OP',
                    help='leave out an operation kind (e.g. cte, to get past a known bug); repeatable')
    ap.add_argument('--citus', action='store_true',
                    help='on a Citus cluster: PG* name the coordinator, WORKER_PORTS the workers (as test/citus/cluster.sh '
                         'sets them; a database where leadscore is not distributed yet)')
    ap.add_argument('--base', metavar='TIMESTAMPTZ',
                    help="the time the generator's times are drawn around, not later than now (default: now); a "
                         'failing run prints its own, to replay the same operations')
    ap.add_argument('--log-dir', default='/tmp', help='where the SQL log of each seed is written')
    args = ap.parse_args()
    unknown = set(args.skip) - {o[0] for o in Runner.OPS}
    if unknown:
        ap.error('unknown operation(s) %s; known: %s' % (', '.join(sorted(unknown)), ', '.join(o[0] for o in Runner.OPS)))
    checks.quiet = True   # thousands of checks: the failures only, then the count
    err = lsref.selftest_error()
    if not checks.check('the reference passes its self-test (hand-computed cases)', err is None, err):
        sys.exit(checks.report())
    for seed in args.seeds:
        r = Runner(seed, args.ops, args.dry_run, os.path.join(args.log_dir, 'leadscore_exactness_seed%d.sql' % seed),
                   args.skip, os.environ['WORKER_PORTS'].split() if args.citus else (), args.base)
        try:
            r.run()
        except Exception:
            traceback.print_exc()
            checks.check('seed %d: ran to the end' % seed, False)
        finally:
            try:
                r.cleanup()
            except Exception:
                traceback.print_exc()
    if args.dry_run:
        print('dry run: operations and reference ran without the extension (no comparison)')
    sys.exit(checks.report())


if __name__ == '__main__':
    main()
