#!/usr/bin/env bash
# Checks that the Go on PATH (/usr/local/go/bin first) can build this module, before anything
# else is done; says in one line what to do when it cannot.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="/usr/local/go/bin:$PATH"
need="$(awk '$1 == "go" { print $2; exit }' "$ROOT/go.mod")"
series="$(echo "$need" | cut -d. -f1,2)"
get="install Go $series from https://go.dev/dl/ into /usr/local/go (rm -rf /usr/local/go && tar -C /usr/local -xzf go$series.*.linux-amd64.tar.gz)"

command -v go >/dev/null || { echo "ERROR: no Go found (PATH and /usr/local/go/bin): $get" >&2; exit 1; }
# The Go installed here, not a toolchain go.mod would switch to: asked outside the module.
have="$(cd / && GOTOOLCHAIN=local go version | awk '{ print $3 }')"
have="${have#go}"

older() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]; }

if ! older "$have" "$need"; then exit 0; fi
if older "$have" 1.21; then
  echo "ERROR: $(command -v go) is Go $have, go.mod needs $need: $get" >&2
  exit 1
fi
# Go 1.21 and later fetch the toolchain go.mod names through the module proxy, unless told not to.
if [ "$(cd / && go env GOTOOLCHAIN)" = local ]; then
  echo "ERROR: $(command -v go) is Go $have, go.mod needs $need and GOTOOLCHAIN=local: run with GOTOOLCHAIN=auto (Go fetches $need through the module proxy), or $get" >&2
  exit 1
fi
echo "==> Go $have here; Go fetches go$need through the module proxy (GOTOOLCHAIN=$(cd / && go env GOTOOLCHAIN))"
