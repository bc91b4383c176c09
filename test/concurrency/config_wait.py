#!/usr/bin/python3
"""A configuration change never leaves another session unable to score. For each kind of change (rule
added, disabled, deleted, condition changed, stage, category, model option), session A makes it in an open
transaction; session B, which has scored before (its models are loaded), inserts an event and waits for A;
A commits. B's statement must then go through under the new configuration, and so must B's next ones, with
scores equal to a recompute. (Until 1.4 B read the configuration as its statement's snapshot saw it, from
before A's commit, and every later write of B failed with "state of model ... does not match its rules".)

Run against a throwaway server with Debian's python3 and psycopg2:
    scripts/with_pg.sh /usr/bin/python3 test/concurrency/config_wait.py
Prints ok / not ok lines and "N passed, N failed"; exits non-zero if a check failed.
"""
import os
import sys
import threading
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'pylib'))
import checks  # noqa: E402
from checks import check, connect  # noqa: E402

setup = connect(autocommit=True)
cur = setup.cursor()
cur.execute("""
DROP EXTENSION IF EXISTS leadscore CASCADE;
DROP SCHEMA IF EXISTS cw CASCADE;
CREATE EXTENSION leadscore;
CREATE SCHEMA cw;
CREATE TABLE cw.lead (id int PRIMARY KEY, kind text);
CREATE TABLE cw.event (lead int, type text, at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON cw.event (lead);
INSERT INTO leadscore.model (name, half_life) VALUES ('cw', '30 days');
SELECT leadscore.track_leads('cw', 'cw.lead', 'id');
SELECT leadscore.track_events('cw', 'cw.event', 'lead', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
  ('cw', 'a', 'cw.event', $$type = 'a'$$, 10), ('cw', 'b', 'cw.event', $$type = 'b'$$, 5),
  ('cw', 'big', 'cw.lead', $$kind = 'big'$$, 7);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('cw', 'cold', '-Infinity'), ('cw', 'hot', 30);
INSERT INTO cw.lead SELECT g, CASE WHEN g % 2 = 0 THEN 'big' END FROM generate_series(1, 20) g;
INSERT INTO cw.event (lead, type) SELECT g % 20 + 1, CASE WHEN g % 3 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 100) g;
""")

changes = [
    ("a rule added", "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                     "VALUES ('cw', 'c', 'cw.event', $$type = 'c'$$, 3)"),
    ("a rule disabled", "UPDATE leadscore.rule SET enabled = false WHERE name = 'b'"),
    ("a rule enabled again", "UPDATE leadscore.rule SET enabled = true WHERE name = 'b'"),
    ("a rule deleted", "DELETE FROM leadscore.rule WHERE name = 'c'"),
    ("a condition changed", "UPDATE leadscore.rule SET condition = $$type IN ('a', 'c')$$ WHERE name = 'a'"),
    ("a lead rule added", "INSERT INTO leadscore.rule (model, name, source, condition, points) "
                          "VALUES ('cw', 'small', 'cw.lead', $$kind IS NULL$$, 2)"),
    ("a stage added", "INSERT INTO leadscore.stage (model, name, min_score) VALUES ('cw', 'warm', 15)"),
    ("a category", "INSERT INTO leadscore.category (model, name, weight) VALUES ('cw', 'web', 0.5); "
                   "UPDATE leadscore.rule SET category = 'web' WHERE name = 'a'"),
    ("a model option", "UPDATE leadscore.model SET half_life = '10 days' WHERE name = 'cw'"),
    ("an inactivity rule", "INSERT INTO leadscore.inactivity_rule (model, name, after, points) "
                           "VALUES ('cw', 'quiet', '20 days', -4)"),
]

b = connect(autocommit=True)
bcur = b.cursor()
bcur.execute("INSERT INTO cw.event (lead, type) VALUES (1, 'a')")  # B has scored: its models are loaded
lead = 0
for name, sql in changes:
    lead = lead % 20 + 1
    a = connect()
    acur = a.cursor()
    acur.execute(sql)  # holds the model's lock until it commits
    result = {}

    def insert(lead=lead):
        try:
            bcur.execute("INSERT INTO cw.event (lead, type) VALUES (%s, 'a'), (%s, 'b')", (lead, lead % 20 + 1))
            result['ok'] = True
        except psycopg2.Error as e:
            result['error'] = (e.pgcode, str(e).strip())

    t = threading.Thread(target=insert)
    t.start()
    time.sleep(0.4)
    waited = t.is_alive()
    a.commit()
    t.join(30)
    check(f"{name}: B waited for A's commit", waited)
    check(f"{name}: B's waiting insert goes through once A commits", result.get('ok'), result.get('error'))
    later = None
    try:
        bcur.execute("INSERT INTO cw.event (lead, type) VALUES (%s, 'b')", (lead,))
        bcur.execute("UPDATE cw.lead SET kind = CASE WHEN kind IS NULL THEN 'big' END WHERE id = %s", (lead,))
    except psycopg2.Error as e:
        later = str(e).strip()
    check(f"{name}: B's next writes go through", later is None, later)
    cur.execute("SELECT (now() + interval '1 day')::text")
    at = cur.fetchone()[0]  # one instant for both reads (autocommit: each statement has its own now())
    cur.execute("CREATE TEMP TABLE live AS SELECT lead, score, stage FROM leadscore.scores_at('cw', %s)", (at,))
    cur.execute("SELECT leadscore.recompute('cw')")
    cur.execute("SELECT count(*) FROM live l FULL JOIN leadscore.scores_at('cw', %s) r USING (lead) "
                "WHERE l.score IS NULL OR r.score IS NULL OR abs(l.score - r.score) > 1e-9 * greatest(1, abs(r.score)) "
                "OR l.stage IS DISTINCT FROM r.stage", (at,))
    diff = cur.fetchone()[0]
    cur.execute("DROP TABLE live")
    check(f"{name}: live scores equal a recompute", diff == 0, diff)
    a.close()

b.close()

# A change to a large model says what it costs (1.6): a NOTICE with the rows it will read before it rescores,
# one every million rows read, one with what it did; a small model's change says nothing.
def notices_of(sql):
    conn = connect(autocommit=True)
    c = conn.cursor()
    c.execute(sql)
    said = [n.strip() for n in conn.notices]
    conn.close()
    return said


said = notices_of("INSERT INTO leadscore.rule (model, name, source, condition, points) "
                  "VALUES ('cw', 'quiet_small', 'cw.event', $$type = 'q'$$, 1)")
check("a small model's change says nothing", not [n for n in said if 'rescor' in n], said)
cur.execute("""
CREATE TABLE cw.big_lead (id int PRIMARY KEY);
CREATE TABLE cw.big (lead int, at timestamptz NOT NULL);
INSERT INTO leadscore.model (name, half_life) VALUES ('big', '30 days');
SELECT leadscore.track_leads('big', 'cw.big_lead', 'id');
SELECT leadscore.track_events('big', 'cw.big', 'lead', 'at');
INSERT INTO cw.big SELECT g % 5000, now() - g * interval '1 minute' FROM generate_series(1, 1100000) g;
""")
said = notices_of("INSERT INTO leadscore.rule (model, name, source, condition, points) "
                  "VALUES ('big', 'any', 'cw.big', 'true', 1)")
start = [n for n in said if 'rescoring from about' in n]
check("a large model's change says what it will read", start and 'model "big"' in start[0], said)
check("... how far it has got", [n for n in said if n.endswith('1000000 rows read')], said)
check("... and what it did", [n for n in said if '5000 leads rescored from 1100000 rows in' in n], said)
said = notices_of("SELECT leadscore.recompute('big')")
check("recompute of a large model says the same", len([n for n in said if 'model "big"' in n]) == 3, said)

# train, snapshot and refresh_rfm of a large model say what they do too; of a small one nothing.
said = notices_of("SELECT leadscore.train('big_p', 'SELECT lead % 2 = 0 AS converted, lead % 7 AS f FROM cw.big "
                  "ORDER BY at LIMIT 1000000')")
check("train on 1,000,000 rows says how far the read has got",
      [n for n in said if n.endswith('predictive model "big_p": 1000000 rows read')], said)
check("... how long it took, and that the fit reads them again",
      [n for n in said if 'predictive model "big_p": 1000000 rows read in' in n and 'again at each Newton' in n], said)
check("... the passes of the fit (the first, then at most one every 10 s)",
      [n for n in said if 'predictive model "big_p": pass 1 over the 1000000 rows' in n], said)
check("... and what it trained",
      [n for n in said if 'version 1 trained on 1000000 rows in' in n and 'Newton iteration' in n], said)
said = notices_of("SELECT leadscore.train('small_p', 'SELECT lead % 2 = 0 AS converted, lead % 7 AS f FROM cw.big "
                  "LIMIT 1000')")
check("train on 1,000 rows says nothing", said == [], said)
cur.execute("INSERT INTO cw.big_lead SELECT g FROM generate_series(1, 120000) g; ANALYZE cw.big_lead, cw.big")
said = notices_of("SELECT leadscore.snapshot('big')")
check("snapshot of 120,000 leads says what it will write",
      [n for n in said if 'model "big": snapshot of about 1' in n], said)
check("... and what it wrote", [n for n in said if 'model "big": 120001 leads written to the snapshot of' in n], said)
said = notices_of("SELECT leadscore.snapshot('cw')")
check("snapshot of a small model says nothing", said == [], said)
said = notices_of("SELECT leadscore.refresh_rfm('big')")
check("refresh_rfm of 1.1 million events says what it will read",
      [n for n in said if 'model "big": RFM segments from about' in n], said)
check("... and what it did", [n for n in said if 'model "big": 120001 leads segmented' in n], said)
said = notices_of("SELECT leadscore.refresh_rfm('cw')")
check("refresh_rfm of a small model says nothing", said == [], said)
cur.execute("DELETE FROM leadscore.predictive_model WHERE name IN ('big_p', 'small_p')")
cur.execute("DELETE FROM leadscore.model WHERE name = 'big'")
cur.execute("DROP SCHEMA cw CASCADE")
sys.exit(checks.report())
