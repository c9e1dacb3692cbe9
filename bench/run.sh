#!/usr/bin/env bash
# make bench: runs bench/run.py against the throwaway cluster from scripts/with-cluster.sh.
set -euo pipefail
exec python3 "$(dirname "$0")/run.py" "$@"
