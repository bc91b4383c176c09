#!/usr/bin/env python3
"""Reads leadscore's scores with query parameters (psycopg 3): the best leads of a model now
(leadscore.top_leads) and one lead's score at another instant (leadscore.scores_at).

The role needs the reader profile (SELECT leadscore.grant_profile('reader', 'that_role')) and SELECT on
the model's lead table (docs/security.md). Connects with libpq's defaults (the PG* variables) or --dsn.

    python3 read_scores.py saas                          # the 10 best leads of model saas
    python3 read_scores.py saas --top 20 --lead 42 --as-of '2026-01-31 12:00+00'
"""
import argparse
import sys

import psycopg


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--top", type=int, default=10, help="how many of the best leads (default 10)")
    ap.add_argument("--lead", help="a lead key, as text (leadscore keeps every key as text)")
    ap.add_argument("--as-of", default=None, help="the instant to read that lead's score at (default now)")
    ap.add_argument("--dsn", default="", help="libpq connection string (default: the PG* variables)")
    args = ap.parse_args()

    with psycopg.connect(args.dsn) as conn:
        # Parameters, never string formatting: the model and keys come from users.
        rows = conn.execute(
            "SELECT lead, score, stage FROM leadscore.top_leads(%s, %s)", (args.model, args.top)
        ).fetchall()
        print(f"top {args.top} of {args.model}:")
        for lead, score, stage in rows:
            print(f"  {lead:>20}  {score:10.2f}  {stage or '-'}")
        if args.lead is not None:
            # scores_at(model, as_of): every lead at that instant; coalesce: NULL means now.
            row = conn.execute(
                "SELECT score, stage FROM leadscore.scores_at(%s, coalesce(%s::timestamptz, now())) WHERE lead = %s",
                (args.model, args.as_of, args.lead),
            ).fetchone()
            when = args.as_of or "now"
            if row is None:
                print(f"lead {args.lead} at {when}: not a lead of {args.model}")
            else:
                print(f"lead {args.lead} at {when}: score {row[0]:.2f}, stage {row[1] or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
