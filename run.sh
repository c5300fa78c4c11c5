#!/usr/bin/env bash
# The main job: execute every notebook with papermill on the default preset and write the report.
#   ./run.sh                      -> runs/<timestamp>/{NN_name/, report.md}
#   ./run.sh --preset smoke       -> any preset: smoke, cpu, gpu, paper (default: auto)
#   ./run.sh --only 01_oasis      -> a subset
#   ./run.sh --jobs 2             -> two notebooks at a time (CPU threads shared out)
#   ./run.sh --check              -> cpu preset, then compare with notebooks/reference/ (exit 1 on drift)
#   ./run.sh --recheck runs/X     -> only compare an earlier run with the references
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
# OpenMP threads that spin while waiting collapse on a shared machine; passive waiting does not
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec "$PY" -m nbsyn.reproduce "$@"
