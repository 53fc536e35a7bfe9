#!/usr/bin/env bash
# Installs everything cairn's lab and tests need on Debian 12, and nothing
# twice: `make lab`, `make test` and .ci/run all call it. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages. softhsm2: the lab's PKCS#11 backend; openssl: chain and
# CRL checks; gcc: cgo for the PKCS#11 client (miekg/pkcs11). The lab runs
# MariaDB, Redis and BIND in every site, BIND + Knot as the cluster DNS;
# tests drive real certbot and lego. iproute2 adds loopback addresses,
# util-linux gives unshare (clients with the lab's resolver); promtool
# lints metrics; headless Chromium renders the status page in a test;
# PowerDNS (gsqlite3) is the second DNS provider (dns.provider: powerdns).
PKGS=(softhsm2 openssl ca-certificates gcc libc6-dev make git
      mariadb-server mariadb-client redis-server bind9 bind9-utils bind9-dnsutils
      knot knot-dnsutils certbot lego iproute2 nftables util-linux procps prometheus chromium
      pdns-server pdns-backend-sqlite3 ansible ansible-lint)

missing=()
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
fi
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ -n "$SUDO" ]; then
    command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  fi
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packages' own services are not used (the lab runs private instances
# on its own addresses); stop any that the install started.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  for svc in mariadb redis-server named knot pdns prometheus prometheus-node-exporter; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
fi

# Terraform: the machine image provides it (its registry is unreachable;
# cairn never downloads Terraform or providers). The provision tests fail
# without it.
command -v terraform >/dev/null || echo "deps: warning: terraform not on PATH; go test ./provision/ will fail (install Terraform 1.x from your mirror)" >&2

# Go: the machine image provides it; cairn pins its toolchain to what is there.
command -v go >/dev/null || { echo "deps: Go 1.26 is required (https://go.dev/doc/install); not found on PATH" >&2; exit 1; }
export GOTOOLCHAIN=local
gov=$(go env GOVERSION)
case "$gov" in go1.2[6-9]*|go1.[3-9]*) ;; *) echo "deps: Go >= 1.26 required, found $gov" >&2; exit 1;; esac

# Pinned Go tools, into .tools/bin (git-ignored).
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"
STATICCHECK_VERSION=v0.8.0   # honnef.co/go/tools 2026.x; newest the module proxy serves for go 1.26
if ! "$TOOLS/staticcheck" -version 2>/dev/null | grep -qF "(${STATICCHECK_VERSION#v})"; then
  echo "deps: go install staticcheck@$STATICCHECK_VERSION"
  GOBIN="$TOOLS" GOFLAGS=-buildvcs=false go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi

# Pebble (RFC 8555 test server): the probes' client logic is tested against it.
PEBBLE_VERSION=v2.10.1
if [ ! -x "$TOOLS/pebble" ]; then
  echo "deps: go install pebble@$PEBBLE_VERSION"
  GOBIN="$TOOLS" GOFLAGS=-buildvcs=false go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$PEBBLE_VERSION"
fi

# lego v5, the newest the module proxy can build (v5.4+ need dependency
# versions it refuses), through the tools module in tools/lego (go install
# cannot: the proxy refuses its version list). Drills renew with it using
# default flags (ARI on). A few minutes the first time.
LEGO5_VERSION=v5.3.1
if ! "$TOOLS/lego5" --version 2>/dev/null | grep -qF "version $LEGO5_VERSION"; then
  echo "deps: go build lego $LEGO5_VERSION (tools/lego)"
  (cd tools/lego && GOFLAGS=-buildvcs=false go build -o "$TOOLS/lego5" github.com/go-acme/lego/v5)
fi

# Boulder binaries (ceremony, later boulder itself) are built by cairn on
# first use at the version pinned in go.mod, into ~/.cache/cairn/.
echo "deps: ok"
