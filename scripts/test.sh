#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run all of it.
#   - a virtualenv in .venv with fedi and its test dependencies
#   - the Fedify interop peer's Node packages (Fedify 2.3.6 and a Node 22 binary, from npm)
#   - the real-client tests' masto.js 8 (npm; Mastodon.py comes with the test extra)
#   - Debian packages the deploy-guide tests run (caddy, docker-compose, systemd-analyze)
#   - the browser tests' Chromium (Debian's) and axe-core (npm); Playwright is in the extra
# Runs on SQLite by default; set FEDI_TEST_DATABASE_URL=postgresql+asyncpg://user@host/db to run
# every database test against PostgreSQL instead (each test gets a fresh database there).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
quietly() {  # show a step's output only when it fails
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
  rm -f "$log"
}
quietly .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip
quietly .venv/bin/python -m pip install --disable-pip-version-check -e '.[test]'
quietly bash scripts/install-interop-deps.sh
quietly bash scripts/install-client-deps.sh
bash scripts/install-system-deps.sh
bash scripts/install-browser-deps.sh

echo "fedi tests on ${FEDI_TEST_DATABASE_URL:-SQLite}"
# pytest exits non-zero when it collects no tests (code 5), so an empty run is never green.
exec .venv/bin/python -m pytest -n 2 --dist loadfile -q -p no:cacheprovider "$@"
