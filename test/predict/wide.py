#!/usr/bin/python3
"""Training over many columns never crashes the server: every column of ../shared/data/Leads.csv (as text,
but the two ids and the label) when it is there, and always a generated table of 64 mixed columns with many
levels; logistic regression and naive Bayes, with work_mem 1 MB (rows spilled to disk) and 64 MB. Until 1.4
the replay of the rows used a descriptor freed with the query's portal: 34 columns of Leads.csv killed the
backend. Each run must return its row count, and the server must not have restarted.

Run against a throwaway server with Debian's python3 and psycopg2:
    scripts/with_pg.sh /usr/bin/python3 test/predict/wide.py
Prints ok / not ok lines and "N passed, N failed"; exits non-zero if a check failed.
"""
import csv
import io
import os
import sys

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from leads_data import LEADS_CSV  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'pylib'))
import checks  # noqa: E402
from checks import check  # noqa: E402


conn = checks.connect(autocommit=True)
cur = conn.cursor()
cur.execute("CREATE EXTENSION IF NOT EXISTS leadscore")
cur.execute("SELECT pg_postmaster_start_time()")
started = cur.fetchone()[0]

tables = []
if os.path.exists(LEADS_CSV):
    with open(LEADS_CSV, newline='', encoding='utf-8') as f:
        rows = list(csv.reader(f))
    header, data = rows[0], rows[1:]
    label = header.index('Converted')
    cols = ', '.join('c%d %s' % (i, 'int' if i == label else 'text') for i in range(len(header)))
    cur.execute("DROP TABLE IF EXISTS leads_all")
    cur.execute(f"CREATE TABLE leads_all ({cols})")
    buf = io.StringIO()
    csv.writer(buf).writerows(data)
    buf.seek(0)
    cur.copy_expert("COPY leads_all FROM STDIN WITH (FORMAT csv)", buf)
    features = [f'c{i}' for i, n in enumerate(header) if n not in ('Prospect ID', 'Lead Number', 'Converted')]
    tables.append(('every column of Leads.csv (%d features)' % len(features),
                   'SELECT %s, c%d AS converted FROM leads_all' % (', '.join(features), label), len(data)))
    # (all of them text: with max_levels 20 the design stays under max_columns)
else:
    print("# ../shared/data/Leads.csv is not there: its run is skipped, the generated table runs")

# 64 columns: 40 categorical with up to 300 levels, 16 numeric with NULLs, 8 boolean.
defs, sel = [], []
for i in range(64):
    if i < 40:
        defs.append(f'c{i} text')
        sel.append(f"'level ' || ((g * {i + 7}) % {50 + 7 * i})")
    elif i < 56:
        defs.append(f'c{i} float8')
        sel.append(f"CASE WHEN g % {i} = 0 THEN NULL ELSE ((g * {i}) % 101)::float8 / 7 END")
    else:
        defs.append(f'c{i} boolean')
        sel.append(f"(g * {i}) % 3 = 0")
cur.execute("DROP TABLE IF EXISTS wide")
cur.execute("CREATE TABLE wide (%s, converted boolean)" % ', '.join(defs))
cur.execute("INSERT INTO wide SELECT %s, (g * 7919) %% 5 < 2 FROM generate_series(1, 4000) g" % ', '.join(sel))
# Naive Bayes counts field values: the same table with its numbers binned as text.
binned = ', '.join(f'c{i}' if i < 40 else f'c{i}::text' for i in range(64))
tables.append(('a generated table of 64 mixed columns', 'SELECT * FROM wide', 4000,
               'SELECT %s, converted FROM wide' % binned))

for what, query, n, *bayes_query in tables:
    for fn in ('train', 'train_bayes'):
        for wm in ('1MB', '64MB'):
            try:
                cur.execute(f"SET work_mem = '{wm}'")
                q = bayes_query[0] if bayes_query and fn == 'train_bayes' else query
                cur.execute(f"SELECT rows FROM leadscore.{fn}('wide_model', %s, max_levels => 20)", (q,))
                got = cur.fetchone()[0]
                check(f"{fn} over {what}, work_mem {wm}: {got} rows", got == n, got)
            except psycopg2.Error as e:
                check(f"{fn} over {what}, work_mem {wm}", False, str(e).strip())
                try:
                    conn = checks.connect(autocommit=True)
                    cur = conn.cursor()
                except psycopg2.Error:
                    pass

cur.execute("SELECT pg_postmaster_start_time()")
check("the server never restarted", cur.fetchone()[0] == started)
cur.execute("DELETE FROM leadscore.predictive_model WHERE name = 'wide_model'")
cur.execute("DROP TABLE IF EXISTS wide, leads_all")
sys.exit(checks.report())
