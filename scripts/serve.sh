#!/usr/bin/env bash
# Install fedi into .venv and run it on its embedded default: a SQLite file (fedi.db), no other
# service needed. Configuration comes from FEDI_* environment variables (see README);
# extra arguments go to `fedi serve` (e.g. --host 0.0.0.0 --port 8000).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e . 2>/dev/null ||
  .venv/bin/python -m pip install --disable-pip-version-check -e .
exec .venv/bin/fedi serve "$@"
