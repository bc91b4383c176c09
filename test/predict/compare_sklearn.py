#!/usr/bin/python3
"""Quality of leadscore.train against scikit-learn's LogisticRegression, on the same rows, features, design
and regularisation (C = 1 / lambda). Run under scripts/with_pg.sh (a throwaway server with leadscore installed).

- Always: a generated table with a planted model; leadscore's maximum-likelihood fit (lambda 0) must recover
  every planted coefficient within 4 standard errors' worth of tolerance (0.12), and match scikit-learn.
- When ../shared/data/Leads.csv exists (the project's checkout, not a user's clone): Leads.csv loaded into
  PostgreSQL, a fixed 80/20 split by lead number, trained without and with the sales-filled columns; test AUC
  of leadscore and scikit-learn must agree within 0.005, and the coefficients are reported (max difference);
  leadscore.train_cv against LogisticRegressionCV (the penalty chosen, the time, the test AUC).
Prints ok / not ok lines and "N passed, N failed"; exits non-zero if a check failed."""
import os
import sys

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import leads_data  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'pylib'))
import checks  # noqa: E402
from checks import check  # noqa: E402

try:
    import numpy as np
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    HAVE_SKLEARN = True
except ImportError:
    HAVE_SKLEARN = False

def rows_of(cur, sql):
    cur.execute(sql)
    names = [d.name for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def compare(conn, name, table, features, lam, where_train, where_test, auc_tol=0.005):
    """Trains both ways; returns (leadscore test AUC, sklearn test AUC, max |coefficient difference|)."""
    cols = ', '.join(f[0] for f in features)
    with conn.cursor() as cur:
        cur.execute("SELECT version, rows, iterations, converged, seconds FROM leadscore.train(%s, %s, 'converted', "
                    "lambda => %s)", (name, f'SELECT {cols}, converted FROM {table} WHERE {where_train}', lam))
        version, rows, iterations, converged, seconds = cur.fetchone()
        cur.execute(f"SELECT leadscore.auc(leadscore.predict(%s, t), converted) FROM {table} t WHERE {where_test}", (name,))
        ls_auc = cur.fetchone()[0]
        cur.execute("SELECT name, std_coefficient, coefficient FROM leadscore.coefficients WHERE model = %s "
                    "AND term <> 'reference'", (name,))
        ls_terms = {n: (s, c) for n, s, c in cur.fetchall()}
        train = rows_of(cur, f'SELECT {cols}, converted FROM {table} WHERE {where_train}')
        test = rows_of(cur, f'SELECT {cols}, converted FROM {table} WHERE {where_test}')
    check(f'{name}: leadscore converged ({rows} rows, {iterations} Newton steps, {seconds:.3f} s)', converged)
    if not HAVE_SKLEARN:
        return ls_auc, None, None, ls_terms
    design = leads_data.Design(features, train)
    z_train, z_test = design.transform(train), design.transform(test)
    y_train = np.array([r['converted'] for r in train], dtype=float)
    y_test = [bool(r['converted']) for r in test]
    kwargs = dict(penalty=None) if lam == 0 else dict(C=1.0 / lam)
    model = LogisticRegression(solver='lbfgs', tol=1e-10, max_iter=100000, **kwargs).fit(z_train, y_train)
    sk_auc = leads_data.auc(list(model.decision_function(z_test)), y_test)
    diffs = [abs(model.intercept_[0] - ls_terms['(intercept)'][0])]
    missing = []
    for term, coef in zip(design.names, model.coef_[0]):
        if term in ls_terms:
            diffs.append(abs(coef - ls_terms[term][0]))
        else:
            missing.append(term)
    check(f'{name}: the same {len(design.names)} design columns', not missing, f'missing {missing}')
    max_diff = max(diffs)

    # The objective both minimise, at each one's coefficients: where a direction is nearly flat (a level seen
    # in a handful of rows), the coefficients may differ while the objective does not.
    def objective(b, w):
        z = b + z_train @ w
        return float(np.sum(np.logaddexp(0, z) - y_train * z) + lam / 2 * np.dot(w, w))
    w_ls = np.array([ls_terms[t][0] if t in ls_terms else 0.0 for t in design.names])
    obj_ls = objective(ls_terms['(intercept)'][0], w_ls)
    obj_sk = objective(model.intercept_[0], model.coef_[0])
    print(f'# {name}: test AUC leadscore {ls_auc:.5f}, scikit-learn {sk_auc:.5f} (difference {abs(ls_auc - sk_auc):.2e}); '
          f'max |standardised coefficient difference| {max_diff:.2e} over {len(diffs)} terms; '
          f'objective leadscore {obj_ls:.6f}, scikit-learn {obj_sk:.6f}', flush=True)
    check(f'{name}: test AUC within {auc_tol} of scikit-learn', abs(ls_auc - sk_auc) <= auc_tol)
    check(f'{name}: coefficients within 1e-3 of scikit-learn (standardised scale), or a lower objective than its',
          max_diff < 1e-3 or obj_ls <= obj_sk * (1 + 1e-9))
    return ls_auc, sk_auc, max_diff, ls_terms


def compare_cv(conn, name, table, features, where_train, where_test):
    """leadscore.train_cv (5 folds, the default ten lambdas) against scikit-learn's LogisticRegressionCV (Cs=10,
    cv=5, chosen by log loss) on the same training rows and design: the penalty each chose, the time each
    took, and the test AUC, next to the default fits (leadscore.train, lambda 1; LogisticRegression, C 1)."""
    import time
    cols = ', '.join(f[0] for f in features)
    query = f'SELECT {cols}, converted FROM {table} WHERE {where_train}'
    with conn.cursor() as cur:
        started = time.monotonic()
        cur.execute("SELECT lambda, cv_auc, converged FROM leadscore.train_cv(%s, %s)", (name, query))
        ls_lambda, cv_auc, converged = cur.fetchone()
        ls_seconds = time.monotonic() - started
        cur.execute(f"SELECT leadscore.auc(leadscore.predict(%s, t), converted) FROM {table} t WHERE {where_test}", (name,))
        ls_auc = cur.fetchone()[0]
        cur.execute("SELECT version FROM leadscore.train(%s, %s)", (name + '_default', query))
        cur.execute(f"SELECT leadscore.auc(leadscore.predict(%s, t), converted) FROM {table} t WHERE {where_test}",
                    (name + '_default',))
        ls_default_auc = cur.fetchone()[0]
        train = rows_of(cur, query)
        test = rows_of(cur, f'SELECT {cols}, converted FROM {table} WHERE {where_test}')
    check(f'{name}: train_cv converged at the lambda it chose ({ls_lambda:g})', converged)
    if not HAVE_SKLEARN:
        print(f'# {name}: scikit-learn is not installed: train_cv test AUC {ls_auc:.5f} ({ls_seconds:.2f} s), '
              f'train (lambda 1) {ls_default_auc:.5f}')
        return
    design = leads_data.Design(features, train)
    z_train, z_test = design.transform(train), design.transform(test)
    y_train = np.array([r['converted'] for r in train], dtype=float)
    y_test = [bool(r['converted']) for r in test]
    started = time.monotonic()
    model = LogisticRegressionCV(Cs=10, cv=5, scoring='neg_log_loss', solver='lbfgs', tol=1e-8,
                                 max_iter=100000).fit(z_train, y_train)
    sk_seconds = time.monotonic() - started
    sk_auc = leads_data.auc(list(model.decision_function(z_test)), y_test)
    default = LogisticRegression(solver='lbfgs', max_iter=100000).fit(z_train, y_train)
    sk_default_auc = leads_data.auc(list(default.decision_function(z_test)), y_test)
    print(f'# {name}: test AUC train_cv {ls_auc:.5f} (lambda {ls_lambda:g}, held-out AUC {cv_auc:.5f}, '
          f'{ls_seconds:.2f} s in the database, the rows read from the table), LogisticRegressionCV {sk_auc:.5f} '
          f'(C {model.C_[0]:g}, i.e. lambda {1 / model.C_[0]:g}; {sk_seconds:.2f} s on the design matrix in memory); '
          f'default fits: train {ls_default_auc:.5f}, LogisticRegression {sk_default_auc:.5f}', flush=True)
    check(f'{name}: train_cv test AUC within 0.005 of LogisticRegressionCV', abs(ls_auc - sk_auc) <= 0.005)
    check(f'{name}: train_cv test AUC not below the default LogisticRegression\'s by more than 0.002',
          ls_auc >= sk_default_auc - 0.002)


def main():
    with checks.connect(autocommit=True, driver=psycopg) as conn:
        with conn.cursor() as cur:
            cur.execute('CREATE EXTENSION IF NOT EXISTS leadscore')

        # Planted model: recovery of the truth (lambda 0), and agreement with scikit-learn.
        sql, truth = leads_data.planted_sql('planted', 40000, 6)
        with conn.cursor() as cur:
            cur.execute(sql)
        features = [(f'x{i}', 'numeric') for i in range(1, 7)] + [('plan', 'categorical'), ('b2b', 'boolean')]
        _, _, _, terms = compare(conn, 'planted', 'planted', features, 0, 'mod(id, 5) <> 0', 'mod(id, 5) = 0')
        worst = max(abs(terms[t][1] - v) for t, v in truth.items())
        detail = ', '.join(f'{t} {terms[t][1]:+.3f} ({v:+.2f})' for t, v in truth.items())
        print(f'# planted: recovered (truth): {detail}')
        check(f'planted: every coefficient recovered within 0.12 (worst {worst:.3f})', worst < 0.12)
        compare(conn, 'planted_l2', 'planted', features, 10, 'mod(id, 5) <> 0', 'mod(id, 5) = 0')

        if not leads_data.leads_available():
            print(f'# {leads_data.LEADS_CSV} is absent: Leads.csv comparison skipped')
        else:
            leads_data.load_leads(conn)
            honest = [(c[1], c[2]) for c in leads_data.HONEST]
            leaky = honest + [(c[1], c[2]) for c in leads_data.LEAKY]
            for lam in (1.0, 0.1):
                compare(conn, f'leads_l{lam:g}', 'leads', honest, lam, "split = 'train'", "split = 'test'")
            compare(conn, 'leads_sales_columns', 'leads', leaky, 1.0, "split = 'train'", "split = 'test'")
            compare_cv(conn, 'leads_cv', 'leads', honest, "split = 'train'", "split = 'test'")
            # For information: the Odoo-like naive Bayes on the same honest columns (numbers cast to text
            # would be ids: it counts the categorical and boolean ones only).
            cols = [f"{c}::text AS {c}" if k == 'boolean' else c for c, k in honest if k != 'numeric']
            with conn.cursor() as cur:
                cur.execute("SELECT auc FROM leadscore.train_bayes('leads_bayes', %s)",
                            (f"SELECT {', '.join(cols)}, converted FROM leads WHERE split = 'train'",))
                cur.execute(f"SELECT leadscore.auc(leadscore.predict('leads_bayes', t), converted) FROM "
                            f"(SELECT {', '.join(cols)}, converted FROM leads WHERE split = 'test') t")
                print(f'# leads_bayes (naive Bayes, {len(cols)} categorical columns): test AUC {cur.fetchone()[0]:.5f}')
    return checks.report()


if __name__ == '__main__':
    sys.exit(main())
