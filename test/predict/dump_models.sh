#!/usr/bin/env bash
# Trained models are user data: pg_dump keeps every version (leadscore.predictive_model and predictive_term are
# extension configuration tables), and after pg_restore the restored model predicts exactly as the original.
# Run under scripts/with_pg.sh. Prints ok / not ok lines and "N passed, N failed".
set -euo pipefail
src=leadscore_models_src
dst=leadscore_models_dst
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "${BASH_SOURCE[0]}")/../pylib/checks.sh"
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
PGOPTIONS='-c client_min_messages=warning' dropdb --if-exists "$src"
PGOPTIONS='-c client_min_messages=warning' dropdb --if-exists "$dst"
createdb "$src"
psql -X -q -v ON_ERROR_STOP=1 -d "$src" >/dev/null <<'SQL'
CREATE EXTENSION leadscore;
SELECT setseed(0.1);
CREATE TABLE hist AS SELECT g AS id, random() AS x, (ARRAY['a', 'b', 'c'])[1 + g % 3] AS c, g % 7 = 0 AS f,
                            random() < 0.3 + 0.4 * (g % 2) AS converted
                       FROM generate_series(1, 2000) g;
SELECT leadscore.train('m', 'SELECT x, c, f, converted FROM hist');
SELECT leadscore.train('m', 'SELECT x, c, converted FROM hist', lambda => 5);
SQL
model_sql="SELECT string_agg(m::text, E'\n' ORDER BY name, version) FROM (SELECT name, version, label, query, features, feature_kinds, lambda, rows, iterations, converged, auc, trained_at FROM leadscore.predictive_model) m"
terms_sql="SELECT string_agg(t::text, E'\n' ORDER BY model, version, ord) FROM leadscore.predictive_term t"
predict_sql="SELECT sum(leadscore.predict('m', h)) FROM hist h"
pg_dump -Fc -d "$src" -f "$tmp/models.dump"
createdb "$dst"
pg_restore -d "$dst" "$tmp/models.dump"
expect "both versions of the model restored" "$(q "$src" "$model_sql")" "$(q "$dst" "$model_sql")"
expect "every term restored" "$(q "$src" "$terms_sql")" "$(q "$dst" "$terms_sql")"
expect "the restored model predicts as the original" "$(q "$src" "$predict_sql")" "$(q "$dst" "$predict_sql")"
expect "retraining after restore adds version 3" "3" "$(q "$dst" "SELECT version FROM leadscore.train('m', 'SELECT x, converted FROM hist')")"
dropdb "$dst"
dropdb "$src"
report
