"""Randomized exactness on a real Citus cluster (test/citus/run.sh starts it and runs the README's
walkthrough first): random writes to the distributed lead and event tables, sent to the coordinator or
to a worker at random (Citus routes them to the node that holds the lead, whose shard trigger scores
them), as single rows, multi-row inserts, INSERT ... SELECT, COPY, updates and deletes of events and
leads. After each batch, every lead's score read on the coordinator (leadscore.scores_at at one instant)
equals an independent reference computed here in Python from the CRM's rows alone (fit points, event
points halving every half-life, negative points, events dated ahead not yet counted; relative 1e-9), which
equals the same scores computed as one SQL query over the distributed tables, and every lead's stage is
the one its reference score reaches.

About one operation in a hundred (CITUS_CHANGES) is a configuration change through the coordinator (a
rule's points, a rule disabled or enabled, the half-life, a stage's threshold), which rescores every node's
shards in its own transaction; the reference reads the configuration when it compares.

Then CITUS_WRITERS (8) concurrent writers of CITUS_WRITER_OPS (150) writes each, on their own connections
to the three nodes, while CITUS_LOAD_CHANGES (6) configuration changes are made on the coordinator, and the
same comparison; then a recompute, and the comparison again.

Usage: test/citus/exactness.py MODEL OPS SEED [compare LABEL] (PGHOST, PGPORT: the coordinator; WORKER_PORTS);
with "compare", only the comparison, once."""
import datetime
import io
import math
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import checks  # noqa: E402

import psycopg2  # noqa: E402

model, ops, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
coordinator = checks.connect(autocommit=True)
workers = [psycopg2.connect(port=int(p)) for p in os.environ["WORKER_PORTS"].split()]
for w in workers:
    w.autocommit = True
nodes = [coordinator] + workers

cur = coordinator.cursor()
# The walkthrough's rules (README.md#citus): fit 10 for a VP, visit +3, unsubscribe -8. Their points,
# whether they are enabled, the half-life and the stages' thresholds change (configuration changes through the
# coordinator): the reference reads them when it compares.
RULES = {"vp": ("fit", "VP"), "visit": ("event", "visit"), "unsubscribed": ("event", "unsubscribe")}


def configuration():
    cur.execute("SELECT extract(epoch FROM half_life) FROM leadscore.model WHERE name = %s", (model,))
    half_life = float(cur.fetchone()[0])
    cur.execute("SELECT name, min_score FROM leadscore.stage WHERE model = %s ORDER BY min_score", (model,))
    stages = cur.fetchall()
    cur.execute("SELECT name, points FROM leadscore.rule WHERE model = %s AND enabled", (model,))
    fit, points = {}, {}
    for name, p in cur.fetchall():
        kind, value = RULES[name]
        (fit if kind == "fit" else points)[value] = float(p)
    return half_life, stages, fit, points


KINDS = ["visit", "visit", "unsubscribe", "download"]
TITLES = ["VP", "VP", "CTO", None]
LEADS = 400
# Times over 40 days, the last ten ahead of now (read before their time, scored from it on).
base = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=30)


# Each writer (the main thread, then the concurrent ones) has its own random stream and connections.
local = threading.local()
local.rng, local.nodes = rng, nodes


def some_time():
    return base + datetime.timedelta(seconds=local.rng.randrange(0, 40 * 86400))


def op():
    rng = local.rng
    c = rng.choice(local.nodes).cursor()
    r = rng.random()
    if r < 0.30:
        c.execute("INSERT INTO crm.activity (lead_id, kind, at) VALUES (%s, %s, %s)",
                  (rng.randrange(1, LEADS), rng.choice(KINDS), some_time()))
    elif r < 0.40:
        rows = [(rng.randrange(1, LEADS), rng.choice(KINDS), some_time()) for _ in range(rng.randrange(2, 30))]
        c.execute("INSERT INTO crm.activity (lead_id, kind, at) VALUES " +
                  ", ".join(c.mogrify("(%s, %s, %s)", x).decode() for x in rows))
    elif r < 0.45:
        c.execute("INSERT INTO crm.activity (lead_id, kind, at) SELECT 1 + (g * %s) %% %s, %s, %s - g * interval '1 hour' "
                  "FROM generate_series(1, %s) g", (rng.randrange(1, 97), LEADS - 1, rng.choice(KINDS), some_time(),
                                                  rng.randrange(1, 50)))
    elif r < 0.50:
        buf = io.StringIO("".join(f"{rng.randrange(1, LEADS)}\t{rng.choice(KINDS)}\t{some_time().isoformat()}\n"
                                  for _ in range(rng.randrange(1, 60))))
        c.copy_expert("COPY crm.activity (lead_id, kind, at) FROM STDIN", buf)
    elif r < 0.62:
        c.execute("UPDATE crm.activity SET kind = %s WHERE lead_id = %s AND id %% 3 = %s",
                  (rng.choice(KINDS), rng.randrange(1, LEADS), rng.randrange(3)))
    elif r < 0.68:
        c.execute("UPDATE crm.activity SET at = %s WHERE lead_id = %s AND id %% 2 = %s",
                  (some_time(), rng.randrange(1, LEADS), rng.randrange(2)))
    elif r < 0.70:
        c.execute("UPDATE crm.activity SET kind = %s WHERE id %% 50 = %s", (rng.choice(KINDS), rng.randrange(50)))
    elif r < 0.80:
        c.execute("DELETE FROM crm.activity WHERE lead_id = %s AND id %% 2 = %s", (rng.randrange(1, LEADS), rng.randrange(2)))
    elif r < 0.90:
        c.execute("INSERT INTO crm.lead (id, title) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET title = excluded.title",
                  (rng.randrange(1, LEADS), rng.choice(TITLES)))
    elif r < 0.95:
        c.execute("UPDATE crm.lead SET title = %s WHERE id %% 17 = %s", (rng.choice(TITLES), rng.randrange(17)))
    else:
        c.execute("DELETE FROM crm.lead WHERE id = %s", (rng.randrange(1, LEADS),))


def reference(at, half_life, fit, points):
    cur.execute("SELECT id, title FROM crm.lead")
    score = {i: fit.get(t, 0.0) for i, t in cur.fetchall()}
    # The events up to the instant read (a later one, dated ahead, counts from its time on).
    cur.execute("SELECT lead_id, kind, extract(epoch FROM %s - at) FROM crm.activity WHERE at <= %s", (at, at))
    for lead, kind, age in cur.fetchall():
        score[lead] = score.get(lead, 0.0) + points.get(kind, 0.0) * math.pow(0.5, float(age) / half_life)
    return score


def sql_reference(at, half_life, fit, points):
    """The same scores as one SQL query over the distributed tables (a second formulation, read through Citus)."""
    def cases(d, col):
        return "CASE %s %s ELSE 0 END" % (col, " ".join(cur.mogrify("WHEN %s THEN %s::float8", kv).decode()
                                                        for kv in d.items())) if d else "0::float8"
    cur.execute(f"""WITH f AS (SELECT id AS lead, {cases(fit, 'title')} AS s FROM crm.lead),
                      e AS (SELECT lead_id AS lead, sum({cases(points, 'kind')}
                                   * power(0.5::float8, extract(epoch FROM %s::timestamptz - at)::float8 / %s)) AS s
                              FROM crm.activity WHERE at <= %s GROUP BY lead_id)
                    SELECT lead, coalesce(f.s, 0) + coalesce(e.s, 0) FROM f FULL JOIN e USING (lead)""",
                (at, half_life, at))
    return {lead: float(s) for lead, s in cur.fetchall()}


def stage_of(s, stages):
    name = None
    for n, m in stages:
        if s >= m - 1e-9 * max(1.0, abs(m)):
            name = n
    return name


def compare(label):
    cur.execute("SELECT now()")
    at = cur.fetchone()[0]
    cur.execute("SELECT lead::bigint, score, stage FROM leadscore.scores_at(%s, %s)", (model, at))
    live = {int(l): (s, st) for l, s, st in cur.fetchall()}
    half_life, stages, fit, points = configuration()
    ref = reference(at, half_life, fit, points)
    bad = []
    for lead in sorted(set(ref) | set(live)):
        want, got = ref.get(lead, 0.0), live.get(lead, (0.0, None))
        if abs(got[0] - want) > 1e-9 * max(1.0, abs(want)):
            bad.append(f"lead {lead}: live {got[0]!r}, reference {want!r}")
        elif lead in live and got[1] != stage_of(want, stages) and not any(abs(want - m) < 1e-6 for _, m in stages):
            bad.append(f"lead {lead}: stage {got[1]}, reference {stage_of(want, stages)} (score {want})")
    checks.check(f"{label}: live scores on the coordinator = the reference for {len(ref)} leads", not bad, bad, 20)
    sql = sql_reference(at, half_life, fit, points)
    bad = [f"lead {lead}: SQL reference {sql.get(lead)!r}, Python reference {ref.get(lead)!r}"
           for lead in sorted(set(ref) | set(sql))
           if abs(sql.get(lead, 0.0) - ref.get(lead, 0.0)) > 1e-9 * max(1.0, abs(ref.get(lead, 0.0)))]
    checks.check(f"{label}: the Python reference = an SQL reference over the distributed tables", not bad, bad, 20)


def change_configuration(c):
    """One configuration change through the coordinator, in its own transaction: a rule's points, a rule
    disabled or enabled again, the half-life, or the hot stage's threshold."""
    rng = local.rng
    r = rng.random()
    if r < 0.4:
        c.execute("UPDATE leadscore.rule SET points = %s WHERE model = %s AND name = %s",
                  (rng.choice([-9, -8, -2, 1, 3, 4, 10, 12.5]), model, rng.choice(list(RULES))))
    elif r < 0.6:
        c.execute("UPDATE leadscore.rule SET enabled = NOT enabled WHERE model = %s AND name = %s",
                  (model, rng.choice(list(RULES))))
    elif r < 0.8:
        c.execute("UPDATE leadscore.model SET half_life = %s WHERE name = %s",
                  (rng.choice(["30 days", "7 days", "90 days"]), model))
    else:
        c.execute("UPDATE leadscore.stage SET min_score = %s WHERE model = %s AND name = 'hot'",
                  (rng.choice([8, 12, 15]), model))


CHANGES = float(os.environ.get("CITUS_CHANGES", "0.01"))  # the share of operations that change the configuration
checks.quiet = False
if len(sys.argv) > 4 and sys.argv[4] == "compare":  # one comparison, now (test/citus/run.sh)
    compare(sys.argv[5] if len(sys.argv) > 5 else "now")
    sys.exit(checks.report())
changes = 0
done = 0
batch = int(os.environ.get("CITUS_BATCH", "0")) or max(1, ops // 10)
while done < ops:
    for _ in range(min(batch, ops - done)):
        if rng.random() < CHANGES:
            change_configuration(coordinator.cursor())
            changes += 1
        else:
            op()
        done += 1
    compare(f"after {done} operations, {changes} of them configuration changes (seed {seed})")
# Concurrent writers, each on its own connections to the three nodes: a statement that Citus cancels to break a
# distributed deadlock (or PostgreSQL a local one) is rolled back whole, and the writer goes on.
WRITERS = int(os.environ.get("CITUS_WRITERS", "8"))
PER_WRITER = int(os.environ.get("CITUS_WRITER_OPS", "150"))
errors, retried = [], [0]


def writer(i):
    local.rng = random.Random(seed * 1000 + i)
    local.nodes = [psycopg2.connect()] + [psycopg2.connect(port=int(p)) for p in os.environ["WORKER_PORTS"].split()]
    for conn in local.nodes:
        conn.autocommit = True
    done = 0
    while done < PER_WRITER:
        try:
            op()
            done += 1
        except (psycopg2.errors.DeadlockDetected, psycopg2.errors.SerializationFailure):
            retried[0] += 1
        except psycopg2.Error as e:
            # A deadlock detected on a worker reaches the client through Citus as an internal error.
            if str(e).startswith(("deadlock detected", "canceling the transaction since it was involved in a "
                                                       "distributed deadlock")):
                retried[0] += 1
                continue
            errors.append(f"writer {i}: {e!r}")
            return


# Meanwhile, configuration changes through the coordinator, each rescoring every node's shards in its transaction.
LOAD_CHANGES = int(os.environ.get("CITUS_LOAD_CHANGES", "6"))
changed, change_waits = [0], []


def changer():
    local.rng = random.Random(seed * 1000 - 1)
    conn = psycopg2.connect()
    conn.autocommit = True
    while changed[0] < LOAD_CHANGES:
        started = time.monotonic()
        try:
            change_configuration(conn.cursor())
            changed[0] += 1
            change_waits.append(time.monotonic() - started)
        except psycopg2.Error as e:
            if isinstance(e, (psycopg2.errors.DeadlockDetected, psycopg2.errors.SerializationFailure)) or str(e).startswith(
                    ("deadlock detected", "canceling the transaction since it was involved in a distributed deadlock")):
                retried[0] += 1
                continue
            errors.append(f"configuration change: {e!r}")
            return
        time.sleep(local.rng.random() * 0.5)


threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)] + [threading.Thread(target=changer)]
for t in threads:
    t.start()
for t in threads:
    t.join()
checks.check(f"{WRITERS} concurrent writers x {PER_WRITER} writes through the three nodes, with {changed[0]} "
             f"configuration changes on the coordinator meanwhile (longest {max(change_waits, default=0):.2f} s): no error "
             f"({retried[0]} deadlocks broken and retried)", not errors, errors, 10)
compare(f"after {WRITERS} concurrent writers")
# A recompute from the CRM's rows on every node, then the same comparison: live was a recompute's answer.
cur.execute("SELECT leadscore.recompute(%s)", (model,))
compare(f"after {WRITERS} concurrent writers, then a recompute")

cur.execute("SELECT count(*) FROM leadscore.stage_change_int8")
checks.check("stage changes recorded on the shards", cur.fetchone()[0] > 0)
sys.exit(checks.report())
