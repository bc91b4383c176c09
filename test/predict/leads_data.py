"""Shared by the comparison and the benchmark: load ../shared/data/Leads.csv into PostgreSQL (never copied into
the repository), generate planted-model tables, and build scikit-learn's design matrix exactly as leadscore's
train.h documents it (mean imputation + missing indicators, one-hot with the most frequent level as reference,
"(missing)" as a level, standardisation with the population std)."""
import csv
import io
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LEADS_CSV = os.environ.get('LEADSCORE_LEADS_CSV') or os.path.normpath(
    os.path.join(HERE, '..', '..', '..', 'shared', 'data', 'Leads.csv'))

# Leads.csv columns used as features: (csv header, sql name, kind). Tags, Lead Quality, Lead Profile and the
# Asymmetrique scores were filled in by the sales team and leak the outcome: LEAKY ones are added only for
# the "with sales columns" run.
HONEST = [
    ('Lead Origin', 'lead_origin', 'categorical'),
    ('Lead Source', 'lead_source', 'categorical'),
    ('Do Not Email', 'do_not_email', 'boolean'),
    ('Do Not Call', 'do_not_call', 'boolean'),
    ('TotalVisits', 'total_visits', 'numeric'),
    ('Total Time Spent on Website', 'time_on_site', 'numeric'),
    ('Page Views Per Visit', 'page_views_per_visit', 'numeric'),
    ('Last Activity', 'last_activity', 'categorical'),
    ('Country', 'country', 'categorical'),
    ('Specialization', 'specialization', 'categorical'),
    ('What is your current occupation', 'occupation', 'categorical'),
    ('City', 'city', 'categorical'),
    ('A free copy of Mastering The Interview', 'free_copy', 'boolean'),
    ('Last Notable Activity', 'last_notable_activity', 'categorical'),
]
LEAKY = [
    ('Tags', 'tags', 'categorical'),
    ('Lead Quality', 'lead_quality', 'categorical'),
    ('Lead Profile', 'lead_profile', 'categorical'),
    ('Asymmetrique Activity Score', 'activity_score', 'numeric'),
    ('Asymmetrique Profile Score', 'profile_score', 'numeric'),
]
SQL_TYPES = {'categorical': 'text', 'boolean': 'boolean', 'numeric': 'float8'}


def leads_available():
    return os.path.exists(LEADS_CSV)


def load_leads(conn):
    """Table leads(lead_number, split, converted, <features>); 'Select' (not answered) is NULL; test = 20% by
    a hash of the lead number (fixed split)."""
    cols = HONEST + LEAKY
    with conn.cursor() as cur:
        cur.execute('DROP TABLE IF EXISTS leads')
        cur.execute('CREATE TABLE leads (lead_number int PRIMARY KEY, converted boolean NOT NULL, split text, '
                    + ', '.join(f'{c[1]} {SQL_TYPES[c[2]]}' for c in cols) + ')')
        with open(LEADS_CSV, newline='', encoding='utf-8') as f:
            reader = csv.DictReader(f)
            buf = io.StringIO()
            w = csv.writer(buf)
            for row in reader:
                out = [row['Lead Number'], row['Converted'] == '1']
                for header, _, kind in cols:
                    v = row[header].strip()
                    if v == '' or v == 'Select':
                        out.append(None)
                    elif kind == 'boolean':
                        out.append(v == 'Yes')
                    else:
                        out.append(v)
                w.writerow(['' if x is None else x for x in out])
        names = 'lead_number, converted, ' + ', '.join(c[1] for c in cols)
        with cur.copy(f"COPY leads ({names}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(buf.getvalue())
        cur.execute("UPDATE leads SET split = CASE WHEN abs(hashint4(lead_number)) % 5 = 0 THEN 'test' ELSE 'train' END")
        cur.execute('ANALYZE leads')
    conn.commit()
    return cols


def planted_sql(table, rows, numeric, seed=0.25):
    """A table with a known model: numeric features x1..xk ~ U(-1, 1) (x1 missing in 5% of rows, counted as 0
    by the truth), a categorical column plan (3 levels) and a boolean b2b. Returns (sql, truth) where truth maps
    leadscore's term names to the planted coefficients (with the imputation's effect on the indicator)."""
    coefs = [round(((-1) ** i) * (0.2 + 0.9 * ((i * 7) % 10) / 10), 2) for i in range(1, numeric + 1)]
    xs = ', '.join(f'random() * 2 - 1 AS x{i}' for i in range(2, numeric + 1))
    lin = ' + '.join(f'{c} * x{i}' for i, c in enumerate(coefs, 1) if i > 1)
    sql = f"""
        SELECT setseed({seed});
        DROP TABLE IF EXISTS {table};
        CREATE TABLE {table} AS
        SELECT g AS id, CASE WHEN g % 20 = 0 THEN NULL ELSE x1 END AS x1, {', '.join(f'x{i}' for i in range(2, numeric + 1))},
               plan, b2b,
               random() < 1 / (1 + exp(-(-0.5 + {coefs[0]} * CASE WHEN g % 20 = 0 THEN 0 ELSE x1 END + {lin}
                                         + CASE plan WHEN 'pro' THEN 0.8 WHEN 'free' THEN -0.6 ELSE 0 END
                                         + CASE WHEN b2b THEN 0.4 ELSE 0 END))) AS converted
          FROM (SELECT g, random() * 2 - 1 AS x1, {xs},
                       (ARRAY['basic', 'basic', 'pro', 'free'])[1 + (g % 4)] AS plan, g % 3 = 0 AS b2b
                  FROM generate_series(1, {rows}) g) s;
    """
    truth = {'(intercept)': -0.5, 'plan = pro': 0.8, 'plan = free': -0.6, 'b2b': 0.4}
    for i, c in enumerate(coefs, 1):
        truth[f'x{i}'] = c
    return sql, truth


# ---- scikit-learn's side: the same design matrix as leadscore's ----------------------------------------

class Design:
    """Fit on training rows (list of dicts), transform any rows into the standardised matrix Z."""

    def __init__(self, features, rows):
        import numpy as np
        self.features = features
        self.columns = []  # (name, function(row) -> float)
        for name, kind in features:
            values = [r[name] for r in rows]
            if kind in ('numeric', 'boolean'):
                present = [float(v) for v in values if v is not None]
                mean = sum(present) / len(present) if present else 0.0
                self.columns.append((name, lambda r, n=name, m=mean: m if r[n] is None else float(r[n])))
                if len(present) < len(values):
                    self.columns.append((name + ' is missing', lambda r, n=name: 1.0 if r[n] is None else 0.0))
            else:
                counts = {}
                for v in values:
                    level = '(missing)' if v is None else v
                    counts[level] = counts.get(level, 0) + 1
                assert len(counts) <= 50, f'{name}: more than 50 levels, grouping not replicated here'
                special = {'(missing)', '(other)'}
                ordinary = [l for l in counts if l not in special]
                pool = ordinary if ordinary else list(counts)
                reference = sorted(pool, key=lambda l: (-counts[l], l))[0]
                for level in sorted(counts):
                    if level == reference:
                        continue
                    # Unseen levels count as the reference level (no "(other)" level without rare levels).
                    self.columns.append((f'{name} = {level}',
                                         lambda r, n=name, l=level: 1.0 if ('(missing)' if r[n] is None else r[n]) == l else 0.0))
        raw = np.array([[f(r) for _, f in self.columns] for r in rows], dtype=float)
        self.mean = raw.mean(axis=0)
        self.std = raw.std(axis=0)
        self.keep = self.std > 0
        self.names = [c[0] for c, k in zip(self.columns, self.keep) if k]

    def transform(self, rows):
        import numpy as np
        raw = np.array([[f(r) for _, f in self.columns] for r in rows], dtype=float)
        return ((raw - self.mean) / np.where(self.std > 0, self.std, 1))[:, self.keep]


def auc(scores, labels):
    """Mann-Whitney AUC, ties 1/2 (independent of leadscore's)."""
    pairs = sorted(zip(scores, labels))
    pos = sum(1 for _, y in pairs if y)
    neg = len(pairs) - pos
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + j + 1) / 2
        rank_sum += avg_rank * sum(1 for k in range(i, j) if pairs[k][1])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
