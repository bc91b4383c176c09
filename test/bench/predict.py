#!/usr/bin/python3
"""Training speed: leadscore.train against scikit-learn's LogisticRegression (lbfgs, its defaults but C = 1 /
lambda) end to end, reading the rows from PostgreSQL with psycopg (binary COPY straight into numpy for numeric
rows, the fastest path; CSV COPY for Leads.csv's mixed columns), on the same
rows, features and regularisation, in the same run. Not a test: it measures and prints "bench: " lines.

Cases: Leads.csv (when ../shared/data/Leads.csv exists; honest columns, lambda 1) and a generated table of
BENCH_PREDICT_ROWS rows (default 1,000,000; BENCH_QUICK=1: 100,000) x 30 numeric features (lambda 1), the
latter trained at the server's work_mem (rows spill to a temporary file: memory bounded) and at 1GB.
Peak memory: leadscore, the largest private resident memory (RssAnon) of the backend sampled every 20 ms
during training, minus the backend's before; scikit-learn, the peak resident memory (ru_maxrss) of a fresh
Python process doing the read and the fit, and the same process's peak before reading (imports).
Run under scripts/with_pg.sh (it reads the backend's /proc entry: same machine)."""
import json
import os
import resource
import subprocess
import sys
import threading
import time

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'predict'))
import leads_data  # noqa: E402

QUICK = os.environ.get('BENCH_QUICK') == '1'
ROWS = int(os.environ.get('BENCH_PREDICT_ROWS', 100000 if QUICK else 1000000))
NFEAT = 30


def rss_anon_kb(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('RssAnon:'):
                return int(line.split()[1])
    return 0


def leadscore_train(conn, name, query, lam, work_mem=None):
    with conn.cursor() as cur:
        if work_mem:
            cur.execute(f"SET work_mem = '{work_mem}'")
        else:
            cur.execute('RESET work_mem')
        cur.execute('SELECT pg_backend_pid()')
        pid = cur.fetchone()[0]
        before = rss_anon_kb(pid)
        peak = [before]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], rss_anon_kb(pid))
                except OSError:
                    return
                time.sleep(0.02)
        t = threading.Thread(target=sample)
        t.start()
        start = time.perf_counter()
        cur.execute("SELECT rows, iterations, converged, auc FROM leadscore.train(%s, %s, 'converted', lambda => %s)",
                    (name, query, lam))
        rows, iterations, converged, auc = cur.fetchone()
        elapsed = time.perf_counter() - start
        stop.set()
        t.join()
    return dict(seconds=elapsed, rows=rows, iterations=iterations, converged=converged, auc=auc,
                peak_mb=(peak[0] - before) / 1024)


def sklearn_child(case, query, features, lam):
    """In a fresh process: read with COPY into numpy, build the design, fit; prints JSON."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    numeric = all(k == 'numeric' for _, k in features)
    ncols = len(features) + 1
    with psycopg.connect() as conn, conn.cursor() as cur:
        buf = bytearray()
        # All-numeric rows without NULL: binary COPY of float8 columns, read by numpy with no parsing (the
        # fastest way from PostgreSQL to numpy); otherwise CSV.
        fmt = 'binary' if numeric else 'csv'
        with cur.copy(f'COPY ({query}) TO STDOUT (FORMAT {fmt})') as copy:
            for block in copy:
                buf += block
    t1 = time.perf_counter()
    if numeric:
        row = np.dtype([('n', '>i2')] + [(f'f{i}', [('len', '>i4'), ('v', '>f8')]) for i in range(ncols)])
        body = np.frombuffer(bytes(buf[19:len(buf) - 2]), dtype=row)
        data = np.column_stack([body[f'f{i}']['v'].astype(float) for i in range(ncols)])
        x, y = data[:, :-1], data[:, -1]
    else:
        import csv
        rows = list(csv.reader(buf.decode().splitlines()))
        cols = list(zip(*rows)) if rows else [()] * ncols
        y = np.array([v == 't' for v in cols[-1]], dtype=float)
        parts = []
        for (name, kind), col in zip(features, cols[:-1]):
            if kind == 'categorical':
                arr = np.array([v if v != '' else '(missing)' for v in col])
                levels, counts = np.unique(arr, return_counts=True)
                ref = levels[np.argmax(counts)]  # most frequent, ties by name (np.unique sorts)
                keep = levels[levels != ref]
                parts.append((arr[:, None] == keep[None, :]).astype(float))
            else:
                conv = {'t': 1.0, 'f': 0.0, '': np.nan} if kind == 'boolean' else {'': np.nan}
                arr = np.array([conv.get(v, None) if v in conv else float(v) for v in col], dtype=float)
                miss = np.isnan(arr)
                arr[miss] = np.nanmean(arr)
                parts.append(arr[:, None])
                if miss.any():
                    parts.append(miss[:, None].astype(float))
        x = np.hstack(parts)
    sd = x.std(axis=0)
    z = (x[:, sd > 0] - x.mean(axis=0)[sd > 0]) / sd[sd > 0]
    t2 = time.perf_counter()
    model = LogisticRegression(C=1.0 / lam).fit(z, y)
    t3 = time.perf_counter()
    print(json.dumps(dict(case=case, read=t1 - t0, prepare=t2 - t1, fit=t3 - t2, total=t3 - t0,
                          iterations=int(model.n_iter_[0]), base_mb=base_kb / 1024,
                          peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))


def sklearn_run(case, query, features, lam):
    out = subprocess.run([sys.executable, __file__, '--sklearn', json.dumps([case, query, features, lam])],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(case, ls, sk):
    print(f"bench: {case}: leadscore.train {ls['seconds']:.2f} s ({ls['rows']} rows, {ls['iterations']} Newton "
          f"steps, training AUC {ls['auc']:.4f}), peak backend private memory +{ls['peak_mb']:.0f} MB", flush=True)
    if sk:
        print(f"bench: {case}: scikit-learn lbfgs {sk['total']:.2f} s end to end = read {sk['read']:.2f} + prepare "
              f"{sk['prepare']:.2f} + fit {sk['fit']:.2f} ({sk['iterations']} iterations), peak process memory "
              f"{sk['peak_mb']:.0f} MB (imports alone {sk['base_mb']:.0f} MB)", flush=True)
        print(f"bench: {case}: leadscore / scikit-learn time = {ls['seconds'] / sk['total']:.2f}", flush=True)


def main():
    with psycopg.connect(autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute('CREATE EXTENSION IF NOT EXISTS leadscore')
        if leads_data.leads_available():
            leads_data.load_leads(conn)
            features = [(c[1], c[2]) for c in leads_data.HONEST]
            query = f"SELECT {', '.join(f[0] for f in features)}, converted FROM leads WHERE split = 'train'"
            ls = leadscore_train(conn, 'bench_leads', query, 1.0)
            report('Leads.csv (7,369 training rows, 14 columns)', ls, sklearn_run('leads', query, features, 1.0))
        else:
            print(f'bench: Leads.csv absent ({leads_data.LEADS_CSV}): skipped', flush=True)

        print(f'bench: generating {ROWS} rows x {NFEAT} features ...', file=sys.stderr, flush=True)
        cols = ', '.join(f'x{i}' for i in range(1, NFEAT + 1))
        with conn.cursor() as cur:
            cur.execute('SELECT setseed(0.3)')
            cur.execute('DROP TABLE IF EXISTS bench_big')
            gen = ', '.join(f'random() * 2 - 1 AS x{i}' for i in range(1, NFEAT + 1))
            lin = ' + '.join(f'{((-1) ** i) * (0.1 + (i % 7) / 10):.2f} * x{i}' for i in range(1, NFEAT + 1))
            cur.execute(f'CREATE TABLE bench_big AS SELECT {cols}, random() < 1 / (1 + exp(-({lin}))) AS converted '
                        f'FROM (SELECT {gen} FROM generate_series(1, {ROWS})) s')
            cur.execute('VACUUM ANALYZE bench_big')
            cur.execute("SELECT current_setting('work_mem')")
            work_mem = cur.fetchone()[0]
        query = f'SELECT {cols}, converted FROM bench_big'
        features = [(f'x{i}', 'numeric') for i in range(1, NFEAT + 1)]
        sk = sklearn_run('big', f'SELECT {cols}, converted::int::float8 FROM bench_big', features, 1.0)
        ls = leadscore_train(conn, 'bench_big', query, 1.0)
        report(f'{ROWS} rows x {NFEAT} features, work_mem {work_mem}', ls, sk)
        ls = leadscore_train(conn, 'bench_big', query, 1.0, work_mem='1GB')
        report(f'{ROWS} rows x {NFEAT} features, work_mem 1GB', ls, sk)


if __name__ == '__main__':
    if len(sys.argv) > 2 and sys.argv[1] == '--sklearn':
        sklearn_child(*json.loads(sys.argv[2]))
    else:
        main()
