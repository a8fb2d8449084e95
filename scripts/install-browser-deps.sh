#!/usr/bin/env bash
# What the real-browser tests (tests/browser) need beyond the Python test extra (which brings
# Playwright for Python): Debian's chromium package, since Playwright's own browser download
# cannot work offline, and axe-core from npm (tests/browser/axe). Installs only what is
# missing and says nothing when all is there; apt needs root (or sudo). FORCE=1 reinstalls
# axe-core.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian's chromium for the browser tests"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium >/dev/null
fi

axe=tests/browser/axe
stamp=$axe/node_modules/.fedi-install-stamp
if [ "${FORCE:-0}" = "1" ] || ! [ -f $axe/node_modules/axe-core/axe.min.js ] \
    || ! cmp -s $axe/package-lock.json "$stamp"; then
  if ! command -v npm >/dev/null; then
    echo "install-browser-deps: npm is not installed (Debian package npm)" >&2
    exit 1
  fi
  echo "installing axe-core for the browser tests"
  (cd $axe && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp $axe/package-lock.json "$stamp"
fi
