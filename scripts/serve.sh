#!/usr/bin/env bash
# Install fedi into .venv and run it on its embedded default: a SQLite file (fedi.db in the
# project directory), no other service needed. Settings come from FEDI_* environment
# variables or the file named by FEDI_CONFIG (see README "Configuration"); extra arguments
# go to `fedi serve` (e.g. --host 0.0.0.0 --port 8000).
#
# The install is skipped when nothing it depends on changed: .venv/.fedi-installed holds a
# hash of pyproject.toml and the Python version, written after a successful install.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'serve.sh: %s\n' "$*" >&2; }

if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv (python3 -m venv)"
  python3 -m venv .venv
fi

stamp=.venv/.fedi-installed
wanted=$({ cat pyproject.toml; .venv/bin/python -c 'import sys; print(sys.version)'; } |
  .venv/bin/python -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
if [ -x .venv/bin/fedi ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  say "fedi is installed and pyproject.toml has not changed: skipping the install"
else
  say "installing fedi and its dependencies into .venv (pip install -e .; the first time takes a minute or two)"
  rm -f "$stamp"
  # pip's own lines (Collecting…, Downloading…, Installing…) show where it is; the
  # "already satisfied" ones are only noise.
  PYTHONUNBUFFERED=1 .venv/bin/python -m pip install --disable-pip-version-check -e . |
    while IFS= read -r line; do
      case $line in "Requirement already satisfied"*) ;; *) printf '%s\n' "$line" ;; esac
    done
  printf '%s\n' "$wanted" > "$stamp"
  say "installed"
fi

say "starting: fedi serve $*"
exec .venv/bin/fedi serve "$@"
