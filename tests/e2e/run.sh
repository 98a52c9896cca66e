#!/usr/bin/env bash
# End-to-end tests of `wrenn server` through the published Python SDK (wrenn 0.3.0), and
# schemathesis against its /openapi.yaml.
# Idempotent: creates/refreshes the venv .venv-e2e at the repo root, builds nothing.
# Needs: target/debug/wrenn (or $WRENN_BIN) and the static envd the server bakes into images
# (found by the server next to its binary, in target/, or via $WRENN_ENVD).
# Extra arguments go to pytest (e.g. `-k pause`, `-x`).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

venv="$root/.venv-e2e"
py="$venv/bin/python"
if [ ! -x "$py" ]; then
  python3 -m venv "$venv" || { echo "run.sh: creating the venv failed" >&2; exit 2; }
fi
# schemathesis (test_schemathesis.py) is pinned: its checks and generation change between
# releases, and a standing suite must not start failing on a release of it.
if ! "$py" -c 'import importlib.metadata as m, sys; sys.exit(m.version("wrenn") != "0.3.0" or m.version("schemathesis") != "4.32.5")' 2>/dev/null \
  || ! "$py" -c 'import pytest, yaml' 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check --ignore-requires-python 'wrenn==0.3.0' \
    'schemathesis==4.32.5' pytest pyyaml \
    || { echo "run.sh: installing the SDK, schemathesis and pytest failed" >&2; exit 2; }
fi

# The E2B SDKs the E2B front end answers (test_e2b.py): the release its contract was read
# from, and one from before 2.51 (create and connect before `/v2`) in a venv of its own.
e2b_new="e2b==2.63.0 e2b-code-interpreter==2.11.5"
if ! "$py" -c 'import importlib.metadata as m, sys; sys.exit(m.version("e2b") != "2.63.0" or m.version("e2b-code-interpreter") != "2.11.5")' 2>/dev/null; then
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $e2b_new \
    || { echo "run.sh: installing the e2b SDKs failed" >&2; exit 2; }
fi
old_venv="$root/.venv-e2e-e2b-old"
if ! "$old_venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("e2b") != "2.50.0")' 2>/dev/null; then
  python3 -m venv "$old_venv" && "$old_venv/bin/pip" install -q --disable-pip-version-check 'e2b==2.50.0' \
    || { echo "run.sh: installing the older e2b SDK failed" >&2; exit 2; }
fi
export E2B_OLD_PYTHON="$old_venv/bin/python"

export WRENN_BIN="${WRENN_BIN:-$root/target/debug/wrenn}"
if [ ! -x "$WRENN_BIN" ]; then
  echo "run.sh: $WRENN_BIN not found; build it first: cargo build -p wrenn-cli" >&2
  exit 2
fi
export WRENN_TEST_DATA_DIR="${WRENN_TEST_DATA_DIR:-/var/tmp/wrenn-test}"

"$py" -m pytest "$root/tests/e2e" -ra -p no:cacheprovider "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "run.sh: pytest collected no tests: counted as a failure" >&2
  exit 1
fi
exit "$code"
