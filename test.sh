#!/usr/bin/env bash
# The tests: unit tests, then every notebook end to end with preset=smoke (papermill + nbval).
#   ./test.sh                    -> everything
#   ./test.sh tests/test_train.py -> any pytest arguments
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
# OpenMP threads that spin while waiting collapse on a shared machine; passive waiting does not
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export NBSYN_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg PYDEVD_DISABLE_FILE_VALIDATION=1
# loadgroup: the browser tests (tests/browser, one JupyterLab + Chromium) run one after another on one
# worker while the other worker takes the rest
if [ "$#" -eq 0 ]; then set -- -n 2 --dist loadgroup tests; fi
exec "$PY" -m pytest "$@"
