#!/usr/bin/python3
"""Stage change notifications: one connection LISTENs on leadscore_stage while another inserts events
that move leads across stage boundaries (a single insert, a multi-row insert over several leads, a
rule change). Each notification must arrive only after commit, carry a JSON payload with exactly the
keys model, lead, from, to, score, at, id (1.4: the row's id in stage_changes) and the right values, and
match that row of leadscore.stage_changes, written by the same transaction; a rolled-back transaction
sends nothing and records nothing. A lead key too long for NOTIFY's 8,000-byte payload never fails the
CRM's write: the payload is cut, says so, and its id names the whole row.

Run against a throwaway server with Debian's python3 and psycopg2:
    scripts/with_pg.sh /usr/bin/python3 test/notify/notify.py
Prints ok / not ok lines and "N passed, N failed"; exits non-zero if a check failed.
"""
import json
import os
import select
import sys
import time

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'pylib'))
import checks  # noqa: E402
from checks import check  # noqa: E402


def collect(conn, expected, timeout=5.0, linger=0.5):
    """Notifications on conn: waits for `expected` of them (at most `timeout` s), then `linger` s more
    for any extra one."""
    got = []
    deadline = time.monotonic() + timeout
    extra_deadline = None
    while True:
        now = time.monotonic()
        if len(got) >= expected and extra_deadline is None:
            extra_deadline = now + linger
        end = extra_deadline if extra_deadline is not None else deadline
        if now >= end:
            break
        if select.select([conn], [], [], end - now) != ([], [], []):
            conn.poll()
            while conn.notifies:
                got.append(conn.notifies.pop(0))
    return got


def parse(notifications):
    """Payloads as dicts (or the raw text if it is not JSON)."""
    out = []
    for n in notifications:
        try:
            out.append(json.loads(n.payload))
        except ValueError:
            out.append(n.payload)
    return out


KEYS = {"model", "lead", "from", "to", "score", "at", "id"}


def check_payloads(name, payloads, expected, writer, txn_now, first_change_id):
    """payloads: parsed notifications; expected: {lead: (from, to, score)} for model saas.
    Checks keys, values, the transaction's time, and that stage_changes has exactly these rows."""
    check(f"{name}: {len(expected)} notification(s)", len(payloads) == len(expected), payloads)
    bad_keys = [p for p in payloads if not isinstance(p, dict) or set(p) != KEYS]
    check(f"{name}: JSON payloads with keys model, lead, from, to, score, at, id", not bad_keys, bad_keys)
    if bad_keys:
        return
    got = {p["lead"]: (p["from"], p["to"], p["score"]) for p in payloads}
    values_ok = (
        all(p["model"] == "saas" for p in payloads)
        and sorted(got) == sorted(expected)
        and all(got[k][:2] == expected[k][:2] and abs(got[k][2] - expected[k][2]) <= 1e-9 * max(1, abs(expected[k][2]))
                for k in expected)
    )
    check(f"{name}: model, lead, from, to and score are right", values_ok,
          f"expected {expected}\ngot      {got}")
    cur = writer.cursor()
    cur.execute("SELECT bool_and(a::timestamptz = %s) FROM unnest(%s::text[]) a",
                (txn_now, [p["at"] for p in payloads]))
    check(f"{name}: 'at' is the transaction's time", cur.fetchone()[0] is True,
          f"transaction time {txn_now}, payloads {[p['at'] for p in payloads]}")
    # The rows the transaction recorded, and the notifications, are the same set.
    cur.execute("""SELECT model, lead, from_stage, to_stage, score, changed_at FROM leadscore.stage_changes
                    WHERE id >= %s AND model = 'saas' ORDER BY lead""", (first_change_id,))
    rows = cur.fetchall()
    matched = 0
    for p in payloads:
        cur.execute("""SELECT count(*) FROM leadscore.stage_changes
                        WHERE id >= %s AND model = %s AND lead = %s AND from_stage IS NOT DISTINCT FROM %s
                          AND to_stage IS NOT DISTINCT FROM %s AND abs(score - %s) <= 1e-9 * greatest(1, abs(score))
                          AND changed_at = %s::timestamptz AND id = %s""",
                    (first_change_id, p["model"], p["lead"], p["from"], p["to"], p["score"], p["at"], p["id"]))
        matched += cur.fetchone()[0] == 1
    writer.rollback()
    check(f"{name}: leadscore.stage_changes has the same rows",
          len(rows) == len(payloads) and matched == len(payloads), f"rows {rows}\npayloads {payloads}")


def next_change_id(cur):
    cur.execute("SELECT coalesce(max(id), 0) + 1 FROM leadscore.stage_changes")
    return cur.fetchone()[0]


def main():
    listener = checks.connect(autocommit=True)
    writer = checks.connect()
    cur = writer.cursor()

    # A CRM and a model without decay (so that scores read later stay exact); events dated now().
    cur.execute("""
        DROP SCHEMA IF EXISTS crm CASCADE;
        DROP EXTENSION IF EXISTS leadscore;
        CREATE EXTENSION leadscore;
        CREATE SCHEMA crm;
        CREATE TABLE crm.lead (id bigint PRIMARY KEY, name text, industry text);
        CREATE TABLE crm.activity (lead_id bigint, type text, occurred_at timestamptz NOT NULL DEFAULT now());
        INSERT INTO leadscore.model (name) VALUES ('saas');
        SELECT leadscore.track_leads('saas', 'crm.lead', 'id');
        SELECT leadscore.track_events('saas', 'crm.activity', 'lead_id', 'occurred_at');
        INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
            ('saas', 'technology', 'crm.lead', $$industry = 'Technology'$$, 10),
            ('saas', 'webinar', 'crm.activity', $$type = 'webinar'$$, 15),
            ('saas', 'demo request', 'crm.activity', $$type = 'demo_request'$$, 25),
            ('saas', 'email open', 'crm.activity', $$type = 'email_open'$$, 1);
        INSERT INTO leadscore.stage (model, name, min_score) VALUES
            ('saas', 'cold', '-Infinity'), ('saas', 'warm', 20), ('saas', 'MQL', 50);
    """)
    writer.commit()
    listener.cursor().execute("LISTEN leadscore_stage")

    # First scores: leads appear in stage cold (from NULL).
    first = next_change_id(cur)
    cur.execute("""INSERT INTO crm.lead VALUES (1, 'Ada', 'Retail'), (2, 'Bob', 'Technology'),
                   (3, 'Cy', NULL), (4, 'Dee', NULL), (5, 'Eve', 'Retail')""")
    cur.execute("SELECT now()")
    txn_now = cur.fetchone()[0]
    writer.commit()
    check_payloads("new leads (first score, from null)", parse(collect(listener, 5)),
                   {"1": (None, "cold", 0), "2": (None, "cold", 10), "3": (None, "cold", 0),
                    "4": (None, "cold", 0), "5": (None, "cold", 0)}, writer, txn_now, first)

    # A single insert: lead 1 requests a demo, cold -> warm; nothing is sent before commit.
    first = next_change_id(cur)
    cur.execute("INSERT INTO crm.activity (lead_id, type) VALUES (1, 'demo_request')")
    cur.execute("SELECT now()")
    txn_now = cur.fetchone()[0]
    early = collect(listener, 0, timeout=0, linger=0.5)
    check("single insert: no notification before commit", early == [], parse(early))
    cur.execute("SELECT from_stage, to_stage FROM leadscore.stage_changes WHERE id >= %s", (first,))
    check("single insert: the transaction sees its stage change before commit",
          cur.fetchall() == [("cold", "warm")])
    writer.commit()
    check_payloads("single insert", parse(collect(listener, 1)), {"1": ("cold", "warm", 25)},
                   writer, txn_now, first)

    # A multi-row insert over several leads: 1 warm -> MQL, 2 cold -> MQL, 3 cold -> warm, 4 stays cold.
    first = next_change_id(cur)
    cur.execute("""INSERT INTO crm.activity (lead_id, type) VALUES
                   (1, 'demo_request'), (2, 'demo_request'), (3, 'webinar'), (2, 'webinar'),
                   (4, 'email_open'), (3, 'email_open'), (3, 'email_open'), (3, 'email_open'),
                   (3, 'email_open'), (3, 'email_open'), (4, 'email_open')""")
    cur.execute("SELECT now()")
    txn_now = cur.fetchone()[0]
    early = collect(listener, 0, timeout=0, linger=0.3)
    check("multi-row insert: no notification before commit", early == [], parse(early))
    writer.commit()
    check_payloads("multi-row insert of several leads", parse(collect(listener, 3)),
                   {"1": ("warm", "MQL", 50), "2": ("cold", "MQL", 50), "3": ("cold", "warm", 20)},
                   writer, txn_now, first)

    # Several statements in one transaction: one notification per stage change, all at commit.
    first = next_change_id(cur)
    cur.execute("INSERT INTO crm.activity (lead_id, type) VALUES (5, 'webinar')")
    cur.execute("INSERT INTO crm.activity (lead_id, type) VALUES (5, 'webinar')")
    cur.execute("SELECT now()")
    txn_now = cur.fetchone()[0]
    early = collect(listener, 0, timeout=0, linger=0.3)
    check("two statements in one transaction: no notification before commit", early == [], parse(early))
    writer.commit()
    check_payloads("two statements in one transaction", parse(collect(listener, 1)),
                   {"5": ("cold", "warm", 30)}, writer, txn_now, first)

    # A rolled-back transaction sends nothing and records nothing.
    first = next_change_id(cur)
    cur.execute("INSERT INTO crm.activity (lead_id, type) VALUES (4, 'demo_request'), (4, 'demo_request')")
    cur.execute("UPDATE crm.lead SET industry = 'Technology' WHERE id = 3")
    writer.rollback()
    late = collect(listener, 0, timeout=0, linger=1.0)
    check("rolled-back transaction: no notification", late == [], parse(late))
    cur.execute("SELECT count(*) FROM leadscore.stage_changes WHERE id >= %s", (first,))
    check("rolled-back transaction: no stage change recorded", cur.fetchone()[0] == 0)
    cur.execute("SELECT lead, stage FROM leadscore.scores WHERE model = 'saas' AND lead IN ('3', '4') ORDER BY lead")
    check("rolled-back transaction: stages as before", cur.fetchall() == [("3", "warm"), ("4", "cold")])
    writer.rollback()

    # A change rolled back to a savepoint, in a transaction that commits, sends nothing for it.
    first = next_change_id(cur)
    cur.execute("SAVEPOINT s")
    cur.execute("INSERT INTO crm.activity (lead_id, type) VALUES (4, 'demo_request'), (4, 'demo_request')")
    cur.execute("SELECT stage FROM leadscore.scores WHERE model = 'saas' AND lead = '4'")
    check("savepoint: lead 4 is an MQL inside the subtransaction", cur.fetchone() == ("MQL",))
    cur.execute("ROLLBACK TO SAVEPOINT s")
    writer.commit()
    late = collect(listener, 0, timeout=0, linger=0.5)
    check("savepoint rolled back, transaction committed: no notification", late == [], parse(late))
    cur.execute("SELECT count(*) FROM leadscore.stage_changes WHERE id >= %s", (first,))
    check("savepoint rolled back, transaction committed: no stage change recorded", cur.fetchone()[0] == 0)
    writer.rollback()

    # A rule change rescores every lead at once, and notifies: demo request 25 -> 10 points.
    first = next_change_id(cur)
    cur.execute("UPDATE leadscore.rule SET points = 10 WHERE model = 'saas' AND name = 'demo request'")
    cur.execute("SELECT now()")
    txn_now = cur.fetchone()[0]
    writer.commit()
    # lead 1: 2 demo requests -> 20 (MQL -> warm); lead 2: 10 + 10 + 15 = 35 (MQL -> warm).
    check_payloads("rule change", parse(collect(listener, 2)),
                   {"1": ("MQL", "warm", 20), "2": ("MQL", "warm", 35)}, writer, txn_now, first)

    # A text key longer than a payload may be (8,000 bytes): the CRM's insert succeeds; the payload is cut
    # (each name to its first 300 bytes), says "cut": true, and its id names the row with the whole key.
    cur.execute("""
        CREATE TABLE crm.account (code text PRIMARY KEY, tier text);
        INSERT INTO leadscore.model (name) VALUES ('accounts');
        SELECT leadscore.track_leads('accounts', 'crm.account', 'code');
        INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
            ('accounts', 'gold', 'crm.account', $$tier = 'gold'$$, 10);
        INSERT INTO leadscore.stage (model, name, min_score) VALUES ('accounts', 'top', 5);
    """)
    writer.commit()
    collect(listener, 0, timeout=0, linger=0.3)
    long_key = "é" * 5000  # 10,000 bytes
    try:
        cur.execute("INSERT INTO crm.account VALUES (%s, 'gold')", (long_key,))
        writer.commit()
        err = None
    except psycopg2.Error as e:
        writer.rollback()
        err = str(e).strip()
    check("a 10,000-byte lead key: the CRM's insert succeeds", err is None, err)
    got = parse(collect(listener, 1))
    p = got[0] if len(got) == 1 and isinstance(got[0], dict) else {}
    check("... one notification, cut, with the key's first 300 bytes",
          p.get("cut") is True and p.get("lead") == "é" * 150 and p.get("to") == "top", got)
    cur.execute("SELECT lead = %s FROM leadscore.stage_changes WHERE model = 'accounts' AND id = %s",
                (long_key, p.get("id")))
    check("... whose id names the row with the whole key", cur.fetchone() == (True,))
    writer.rollback()

    listener.close()
    cur.execute("DROP SCHEMA crm CASCADE; DROP EXTENSION leadscore")
    writer.commit()
    writer.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # an unexpected error is a failure, not a crash without the summary line
        check(f"unexpected error: {type(e).__name__}: {e}", False)
    sys.exit(checks.report())
