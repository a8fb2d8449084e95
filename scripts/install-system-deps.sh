#!/usr/bin/env bash
# Debian packages the test suite uses beyond Python and Node: the deploy guide's checkers
# (caddy validate, docker-compose config, systemd-analyze verify). Installs only what is
# missing; needs root (or sudo) and Debian's apt.
set -euo pipefail
missing=()
command -v caddy >/dev/null || missing+=(caddy)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v systemd-analyze >/dev/null || missing+=(systemd)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages for the tests: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
