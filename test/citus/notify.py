"""Stage changes notified on a Citus cluster (test/citus/run.sh, after the walkthrough): a client LISTENs on
the coordinator; writes through a worker and through the coordinator record stage changes on the workers;
leadscore.relay_stage_changes() on the coordinator notifies each of them once, with the payload of one
server (model, lead, from, to, score, at, id: the id of its row in stage_change_<key>); a second call has
nothing left to notify.

Usage: test/citus/notify.py (PGHOST, PGPORT: the coordinator; WORKER_PORTS)."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import checks  # noqa: E402

import psycopg2  # noqa: E402

listener = checks.connect(autocommit=True)
cur = listener.cursor()
cur.execute("LISTEN leadscore_stage")
coordinator = checks.connect(autocommit=True)
worker = psycopg2.connect(port=int(os.environ["WORKER_PORTS"].split()[0]))
worker.autocommit = True


def relay():
    c = coordinator.cursor()
    c.execute("SELECT leadscore.relay_stage_changes()")
    return c.fetchone()[0]


def received(expected):
    """The notifications that arrived (waiting up to 10 s for `expected` of them)."""
    got = []
    deadline = time.monotonic() + 10
    while len(got) < expected and time.monotonic() < deadline:
        listener.poll()
        while listener.notifies:
            got.append(json.loads(listener.notifies.pop(0).payload))
        time.sleep(0.05)
    listener.poll()
    got += [json.loads(n.payload) for n in listener.notifies]
    listener.notifies.clear()
    return got


def history(ids):
    c = coordinator.cursor()
    c.execute("SELECT id, lead::text, from_stage, to_stage FROM leadscore.stage_change_int8 WHERE id = ANY(%s)",
              (ids,))
    rows = {}
    for r in c.fetchall():
        rows.setdefault(r[0], []).append(r[1:])
    return rows


pending = relay()
got = received(pending)
checks.check("relay_stage_changes notifies the changes recorded before the client listened (the walkthrough's 3)",
             pending == 3 and len(got) == 3, f"relayed {pending}, received {len(got)}")

# Five new leads (a first stage each) through a worker, then one of them hot through the coordinator.
c = worker.cursor()
c.execute("INSERT INTO crm.activity (lead_id, kind, at) SELECT 900000 + g, 'visit', now() FROM generate_series(1, 5) g")
coordinator.cursor().execute("INSERT INTO crm.activity (lead_id, kind, at) SELECT 900001, 'visit', now() "
                             "FROM generate_series(1, 4)")
checks.check("nothing is notified before the relay runs", not received(0))
n = relay()
got = received(n)
checks.check("relay_stage_changes on the coordinator notifies each change recorded on the workers: 6", n == 6 and
             len(got) == 6, f"relayed {n}, received {len(got)}: {got}")
rows = history([g["id"] for g in got])
bad = [g for g in got if rows.get(g["id"]) != [(g["lead"], g["from"], g["to"])] or g["model"] != "sales"]
checks.check("  ... each payload names its model, lead, stages and its row's id, unique in the cluster", not bad,
             [(g, rows.get(g["id"])) for g in bad])
checks.check("  ... the hot lead's change among them", any(g["lead"] == "900001" and g["to"] == "hot" for g in got))
checks.check("a second relay has nothing left to notify", relay() == 0 and not received(0))
sys.exit(checks.report())
