#!/usr/bin/env bash
# Training benchmark: leadscore.train against scikit-learn end to end (see predict.py). Starts a throwaway
# server through scripts/with_pg.sh. BENCH_QUICK=1: 100,000 generated rows instead of 1,000,000.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/with_pg.sh /usr/bin/python3 test/bench/predict.py
