#!/usr/bin/env bash
# The Python client's checks, from anywhere, on a machine where the extension is
# installed: pinned dependencies into target/venv-python-client, the wheel built
# and installed, mypy --strict, the suite against a throwaway cluster
# (scripts/with-cluster.sh, BILLING_PORT or 5601), then the pgbouncer tests
# (scripts/with-pgbouncer.sh, port + 1). Exits non-zero on any failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV="$ROOT/target/venv-python-client"
DIST="$ROOT/target/python-client-dist"
PORT=${BILLING_PORT:-5601}
PYTHON=${PYTHON:-python3}
export PYTHONPYCACHEPREFIX="$ROOT/target/python-client-pycache" PIP_DISABLE_PIP_VERSION_CHECK=1

run() { echo "+ $*" >&2; "$@"; }

echo "== dependencies (requirements-dev.lock)" >&2
if [ ! -x "$VENV/bin/python" ]; then
    run "$PYTHON" -m venv "$VENV"
fi
if ! cmp -s "$HERE/requirements-dev.lock" "$VENV/.installed-lock"; then
    run "$VENV/bin/pip" install -q -r "$HERE/requirements-dev.lock"
    cp "$HERE/requirements-dev.lock" "$VENV/.installed-lock"
fi

echo "== the wheel" >&2
rm -rf "$DIST"
run "$VENV/bin/pip" wheel -q --no-deps --no-build-isolation -w "$DIST" "$HERE"
WHEEL="$DIST/pgbilling-0.3.0-py3-none-any.whl"
run "$VENV/bin/python" - "$WHEEL" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
metadata = zipfile.ZipFile(sys.argv[1]).read("pgbilling-0.3.0.dist-info/METADATA").decode()
for needed in ("pgbilling/py.typed", "pgbilling/__init__.py", "pgbilling-0.3.0.dist-info/licenses/LICENSE"):
    assert needed in names, f"{needed} is not in the wheel: {names}"
for line in ("Version: 0.3.0", "License-Expression: MIT", "Requires-Python: >=3.11"):
    assert line in metadata.splitlines(), f"{line!r} is not in METADATA"
print(f"wheel ok: {len(names)} files")
PY
run "$VENV/bin/pip" install -q --no-deps --force-reinstall "$WHEEL"

cd "$HERE"
echo "== mypy --strict" >&2
run "$VENV/bin/mypy" --strict --cache-dir "$ROOT/target/python-client-mypy" src/pgbilling tests

echo "== the suite (port $PORT)" >&2
run env BILLING_PORT="$PORT" "$ROOT/scripts/with-cluster.sh" \
    "$VENV/bin/python" -m pytest -m "not pgbouncer"

echo "== through pgbouncer (port $((PORT + 1)))" >&2
run env BILLING_PORT="$PORT" "$ROOT/scripts/with-cluster.sh" "$ROOT/scripts/with-pgbouncer.sh" \
    "$VENV/bin/python" -m pytest -m pgbouncer
