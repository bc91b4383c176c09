#!/usr/bin/env python3
"""Listens for leadscore's stage changes and prints each one (psycopg 3).

leadscore sends every recorded stage change with pg_notify on channel leadscore_stage when its
transaction commits, as JSON:

    {"model": "saas", "lead": "42", "from": "warm", "to": "MQL", "score": 55.2,
     "at": "2026-01-31 10:00:00+00", "id": 1187}

"lead" is always text, whatever the CRM's key type; "from" is null for a lead's first stage. A change
whose payload would be too long for NOTIFY (8,000 bytes: a huge text key, very long names) carries
"cut": true and its names cut to their first 300 bytes: the whole row is then read from
leadscore.stage_changes by model and id (which needs the reader profile, and SELECT on the lead table's
key column: see docs/security.md).

Connects with libpq's defaults (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD... or --dsn).

    python3 listen_stages.py                        # until interrupted
    python3 listen_stages.py --count 1 --timeout 60 # the first change, or give up after 60 s

Works with psycopg 3.1 (Debian bookworm's python3-psycopg) and later: it waits on the connection's
socket and lets a no-op query deliver what arrived (psycopg 3.2 can also do conn.notifies(timeout=...)).
"""
import argparse
import json
import select
import sys
import time

import psycopg


def full_row(conn, change):
    """The stage_changes row of a cut payload: by id (ids count per key type) and the model, of which
    the payload may hold only the first 300 bytes."""
    row = conn.execute(
        "SELECT model, lead, from_stage, to_stage, score, changed_at FROM leadscore.stage_changes"
        " WHERE id = %s AND starts_with(model, %s) ORDER BY model = %s DESC LIMIT 1",
        (change["id"], change["model"], change["model"]),
    ).fetchone()
    if row is None:  # not visible to this role, or gone
        return change
    model, lead, from_stage, to_stage, score, changed_at = row
    return dict(change, model=model, lead=lead, **{"from": from_stage, "to": to_stage},
                score=score, at=changed_at.isoformat(" "))


def show(change):
    lead = change["lead"]
    if len(lead) > 40:
        lead = f"{lead[:20]}... ({len(lead)} characters)"
    cut = " [payload cut: row read from stage_changes]" if change.get("cut") else ""
    print(f"change {change['id']}: model {change['model']}, lead {lead}, "
          f"{change['from'] or '-'} -> {change['to']}, score {change['score']:g}, at {change['at']}{cut}",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", default="", help="libpq connection string (default: the PG* variables)")
    ap.add_argument("--count", type=int, default=0, help="stop after this many changes (0: never)")
    ap.add_argument("--timeout", type=float, default=0, help="stop after this many seconds (0: never)")
    args = ap.parse_args()

    # autocommit: LISTEN takes effect at once, and the queries below hold no transaction open.
    conn = psycopg.connect(args.dsn, autocommit=True)
    arrived = []
    conn.add_notify_handler(arrived.append)
    conn.execute("LISTEN leadscore_stage")
    print("listening on leadscore_stage", flush=True)

    deadline = time.monotonic() + args.timeout if args.timeout else None
    seen = 0
    while not args.count or seen < args.count:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            print(f"timeout after {args.timeout:g} s, {seen} change(s)", flush=True)
            return 1 if args.count else 0
        if not arrived and select.select([conn.fileno()], [], [], wait) == ([], [], []):
            continue
        conn.execute("SELECT 1")  # reads what the server sent: the handler collects the notifications
        while arrived and (not args.count or seen < args.count):
            change = json.loads(arrived.pop(0).payload)
            if change.get("cut"):
                change = full_row(conn, change)
            show(change)
            seen += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
