"""Randomized exactness on a real Citus cluster (test/citus/run.sh starts it and runs the README's
walkthrough first): random writes to the distributed lead and event tables, sent to the coordinator or
to a worker at random (Citus routes them to the node that holds the lead, whose shard trigger scores
them), as single rows, multi-row inserts, INSERT ... SELECT, COPY, updates and deletes of events and
leads. After each batch, every lead's score read on the coordinator (leadscore.scores_at at one instant)
equals an independent reference computed here in Python from the CRM's rows alone (fit points, event
points halving every half-life, negative points, events dated ahead not yet counted; relative 1e-9), and every lead's stage is the one its
reference score reaches.

Then CITUS_WRITERS (8) concurrent writers of CITUS_WRITER_OPS (150) writes each, on their own connections
to the three nodes, and the same comparison.

Usage: test/citus/exactness.py MODEL OPS SEED (PGHOST, PGPORT: the coordinator; WORKER_PORTS)."""
import datetime
import io
import math
import os
import random
import sys
import threading

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
cur.execute("SELECT extract(epoch FROM half_life) FROM leadscore.model WHERE name = %s", (model,))
half_life = float(cur.fetchone()[0])
cur.execute("SELECT name, min_score FROM leadscore.stage WHERE model = %s ORDER BY min_score", (model,))
stages = cur.fetchall()
# The walkthrough's rules (docs/operations.md#citus): fit 10 for a VP, visit +3, unsubscribe -8.
FIT = {"VP": 10.0}
POINTS = {"visit": 3.0, "unsubscribe": -8.0}
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


def reference(at):
    cur.execute("SELECT id, title FROM crm.lead")
    score = {i: FIT.get(t, 0.0) for i, t in cur.fetchall()}
    # The events up to the instant read (a later one, dated ahead, counts from its time on).
    cur.execute("SELECT lead_id, kind, extract(epoch FROM %s - at) FROM crm.activity WHERE at <= %s", (at, at))
    for lead, kind, age in cur.fetchall():
        score[lead] = score.get(lead, 0.0) + POINTS.get(kind, 0.0) * math.pow(0.5, float(age) / half_life)
    return score


def stage_of(s):
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
    ref = reference(at)
    bad = []
    for lead in sorted(set(ref) | set(live)):
        want, got = ref.get(lead, 0.0), live.get(lead, (0.0, None))
        if abs(got[0] - want) > 1e-9 * max(1.0, abs(want)):
            bad.append(f"lead {lead}: live {got[0]!r}, reference {want!r}")
        elif lead in live and got[1] != stage_of(want) and not any(abs(want - m) < 1e-6 for _, m in stages):
            bad.append(f"lead {lead}: stage {got[1]}, reference {stage_of(want)} (score {want})")
    checks.check(f"{label}: live scores on the coordinator = the reference for {len(ref)} leads", not bad, bad, 20)


checks.quiet = False
done = 0
batch = int(os.environ.get("CITUS_BATCH", "0")) or max(1, ops // 10)
while done < ops:
    for _ in range(min(batch, ops - done)):
        op()
        done += 1
    compare(f"after {done} operations (seed {seed})")
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


threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
checks.check(f"{WRITERS} concurrent writers x {PER_WRITER} writes through the three nodes: no error "
             f"({retried[0]} deadlocks broken and retried)", not errors, errors, 10)
compare(f"after {WRITERS} concurrent writers")

cur.execute("SELECT count(*) FROM leadscore.stage_change_int8")
checks.check("stage changes recorded on the shards", cur.fetchone()[0] > 0)
sys.exit(checks.report())
