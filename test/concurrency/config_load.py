#!/usr/bin/python3
"""A configuration change to a model of 200,000 leads while 4 writers insert events for its leads.

Each writer inserts one event at a time (autocommit) for a random lead, and times every insert. A rule is
added to the model once the writers run; the change rescores every lead in its own transaction, which
holds the model's lock, so the writers wait for it. Reported: how long the change took, the writers'
longest wait and their inserts per second before, during and after. Checked: every writer's insert goes
through (none fails, none is lost), and afterwards the live scores equal a recompute from scratch and
count every event once.

With --concurrently the rule is added to a draft of the model (leadscore.draft: nothing rescored) and the
draft published with CALL leadscore.publish_concurrently: the draft's states are built beside the model's
while the writers go on, and only the swap holds them. Checked then too: the writers' longest wait is a
fraction of the change's time, and inserts went through while the change ran.

Run against a throwaway server with Debian's python3 and psycopg2:
    scripts/with_pg.sh /usr/bin/python3 test/concurrency/config_load.py [--leads N]
Prints ok / not ok lines, the figures, and "N passed, N failed"; exits non-zero if a check failed.
"""
import argparse
import os
import random
import sys
import threading
import time

import psycopg2
import psycopg2.errors

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'pylib'))
import checks  # noqa: E402
from checks import check, connect  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('--leads', type=int, default=200000, help='leads of the model (default 200,000)')
ap.add_argument('--writers', type=int, default=4, help='concurrent writers (default 4)')
ap.add_argument('--concurrently', action='store_true',
                help='make the change in a draft and CALL leadscore.publish_concurrently (the writers go on)')
args = ap.parse_args()
LEADS = args.leads

setup = connect(autocommit=True)
cur = setup.cursor()
t0 = time.time()
cur.execute("""
DROP EXTENSION IF EXISTS leadscore CASCADE;
DROP SCHEMA IF EXISTS cl CASCADE;
CREATE EXTENSION leadscore;
CREATE SCHEMA cl;
CREATE TABLE cl.lead (id int PRIMARY KEY, size int);
CREATE TABLE cl.event (id bigserial PRIMARY KEY, lead int, type text, at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON cl.event (lead);
INSERT INTO leadscore.model (name, half_life) VALUES ('load', '30 days');
SELECT leadscore.track_leads('load', 'cl.lead', 'id');
SELECT leadscore.track_events('load', 'cl.event', 'lead', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
  ('load', 'visit', 'cl.event', $$type = 'visit'$$, 2), ('load', 'big', 'cl.lead', $$size > 500$$, 10);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('load', 'cold', '-Infinity'), ('load', 'warm', 12);
""")
cur.execute("INSERT INTO cl.lead SELECT g, g %% 1000 FROM generate_series(1, %s) g", (LEADS,))
cur.execute("INSERT INTO cl.event (lead, type, at) SELECT g %% %s + 1, CASE WHEN g %% 3 = 0 THEN 'visit' ELSE 'demo' END, "
            "now() - (g %% 90) * interval '1 day' FROM generate_series(1, %s) g", (LEADS, LEADS * 2))
cur.execute("ANALYZE cl.lead, cl.event")
print('# set-up: %d leads, %d events in %.1f s' % (LEADS, LEADS * 2, time.time() - t0))

stop = threading.Event()
samples = []          # (start, seconds) of every insert, all writers
errors = []
inserted = [0] * args.writers
lock = threading.Lock()


def writer(w):
    conn = connect(autocommit=True)
    c = conn.cursor()
    rng = random.Random(w)
    c.execute("INSERT INTO cl.event (lead, type) VALUES (1, 'warmup')")  # the model is loaded
    inserted[w] += 1
    while not stop.is_set():
        lead = rng.randint(1, LEADS)
        start = time.time()
        try:
            c.execute("INSERT INTO cl.event (lead, type) VALUES (%s, %s)", (lead, rng.choice(['visit', 'demo'])))
            inserted[w] += 1
        except psycopg2.Error as e:
            errors.append(str(e).strip())
            continue
        with lock:
            samples.append((start, time.time() - start))
    conn.close()


threads = [threading.Thread(target=writer, args=(w,)) for w in range(args.writers)]
for t in threads:
    t.start()
time.sleep(2)
change = connect(autocommit=True)
ccur = change.cursor()
cancelled = None
if args.concurrently:
    ccur.execute("SELECT leadscore.draft('load')")
    ccur.execute("INSERT INTO leadscore.rule (model, name, source, condition, points) "
                 "VALUES ('load_draft', 'demo', 'cl.event', $$type = 'demo'$$, 5)")
    # A publish cancelled in its build (a statement timeout) leaves nothing behind.
    ccur.execute("SET statement_timeout = '1s'")
    try:
        ccur.execute("CALL leadscore.publish_concurrently('load_draft')")
    except psycopg2.errors.QueryCanceled as e:
        cancelled = str(e).strip()
    ccur.execute("RESET statement_timeout")
    ccur.execute("SELECT (SELECT count(*) FROM leadscore.draft_build), (SELECT count(*) FROM leadscore.draft_touch_int4), "
                 "(SELECT count(*) FROM leadscore.state_int4 s JOIN leadscore.model m ON m.state_id = s.model_id "
                 "  WHERE m.name = 'load_draft'), (SELECT count(*) FROM leadscore.rule WHERE model = 'load' AND name = 'demo')")
    left = ccur.fetchone()
    check('a publish cancelled by a statement timeout in its build leaves no build, no noted lead, no draft state, '
          'the model as it was', cancelled is not None and left == (0, 0, 0, 0), (cancelled, left))
c0 = time.time()
if args.concurrently:
    ccur.execute("CALL leadscore.publish_concurrently('load_draft')")
else:
    ccur.execute("INSERT INTO leadscore.rule (model, name, source, condition, points) "
                 "VALUES ('load', 'demo', 'cl.event', $$type = 'demo'$$, 5)")
c1 = time.time()
for notice in change.notices:
    print('# ' + notice.strip())
time.sleep(2)
stop.set()
for t in threads:
    t.join(60)
change.close()

before = [s for s in samples if s[0] + s[1] < c0]
during = [s for s in samples if s[0] < c1 and s[0] + s[1] >= c0]
after = [s for s in samples if s[0] >= c1]
longest = max((s[1] for s in samples), default=0)
print('# the change (a rule added, every lead rescored): %.2f s' % (c1 - c0))
print('# writers: longest wait %.2f s; inserts per second before %.0f, after %.0f; %d overlapped the change'
      % (longest, len(before) / max(c0 - samples[0][0], 1e-9) if before else 0,
         len(after) / max(time.time() - c1, 1e-9), len(during)))
check('no writer insert failed', not errors, errors[:3])
if args.concurrently:
    inside = [x for x in samples if x[0] >= c0 and x[0] + x[1] <= c1]
    check('the writers went on while the draft was published (%d inserts)' % len(inside), len(inside) > 0, len(inside))
    check('their longest wait (%.2f s) is under half the change (%.2f s)' % (longest, c1 - c0),
          longest < (c1 - c0) / 2, (longest, c1 - c0))
    cur.execute("SELECT count(*) FROM leadscore.rule WHERE model = 'load' AND name = 'demo'")
    check('the draft\'s rule is live', cur.fetchone()[0] == 1)
check('the writers went on once the change committed', len(after) > 0, len(after))

cur.execute("SELECT count(*) FROM cl.event")
events = cur.fetchone()[0]
check('every insert is in the table', events == LEADS * 2 + sum(inserted), (events, LEADS * 2 + sum(inserted)))
cur.execute("SELECT (now() + interval '1 day')::text")
at = cur.fetchone()[0]
cur.execute("CREATE TEMP TABLE live AS SELECT lead, score, stage FROM leadscore.scores_at('load', %s)", (at,))
cur.execute("SELECT count(*) FROM cl.event WHERE lead = 1 AND type = 'demo'")
demos_1 = cur.fetchone()[0]
cur.execute("SELECT hits FROM leadscore.explain('load', '1', %s) WHERE rule = 'demo'", (at,))
check("lead 1's demo events all count, once", cur.fetchone()[0] == demos_1, demos_1)
cur.execute("SELECT leadscore.recompute('load')")
cur.execute("SELECT count(*) FROM live l FULL JOIN leadscore.scores_at('load', %s) r USING (lead) "
            "WHERE l.score IS NULL OR r.score IS NULL OR abs(l.score - r.score) > 1e-9 * greatest(1, abs(r.score)) "
            "OR l.stage IS DISTINCT FROM r.stage", (at,))
diff = cur.fetchone()[0]
check('live scores of the %d leads equal a recompute after the change and the writes' % LEADS, diff == 0, diff)
cur.execute("DROP TABLE live")
cur.execute("DELETE FROM leadscore.model WHERE name = 'load'")
cur.execute("DROP SCHEMA cl CASCADE")
sys.exit(checks.report())
