#!/usr/bin/env bash
# Installs what cairn needs on Debian 12, and nothing twice. Safe to re-run.
#   scripts/deps.sh lab    what the lab, its drills, lab exec's clients and
#                          provisioning run (`make lab`)
#   scripts/deps.sh test   that, plus what only the tests use: Chromium,
#                          ansible-lint, staticcheck, Pebble, lego v5
#                          (`make test`, .ci/run)
# Each phase prints its time, so a slow first run shows where it went.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-test}
case "$MODE" in lab|test) ;; *) echo "deps: usage: scripts/deps.sh lab|test (got ${MODE:0:20})" >&2; exit 2;; esac
phase_start=$SECONDS
phase() { # phase NAME: prints how long the previous phase took
  local now=$SECONDS
  if [ -n "${phase_name:-}" ] && ((now - phase_start > 0)); then
    echo "deps: $phase_name: $((now - phase_start)) s"
  fi
  phase_name=$1 phase_start=$now
}

# Debian packages. softhsm2: the lab's PKCS#11 backend; openssl: chain and
# CRL checks; gcc: cgo for the PKCS#11 client (miekg/pkcs11). The lab runs
# MariaDB (and mariadb-backup: the controller's backups), Redis and BIND in every site, BIND + Knot as the cluster DNS,
# Prometheus with cairn's rules (promtool lints them); drills and
# `lab exec` drive real certbot and lego. iproute2 adds loopback addresses,
# util-linux gives unshare (clients with the lab's resolver), nftables the
# drills' partitions and redirections, conntrack forgets a redirection's
# stale entries (drill/toxic.go); PowerDNS (gsqlite3) is the second DNS provider
# (dns.provider: powerdns); Ansible installs provisioned hosts.
PKGS=(softhsm2 openssl ca-certificates gcc libc6-dev make git
      mariadb-server mariadb-client mariadb-backup redis-server bind9 bind9-utils bind9-dnsutils
      knot knot-dnsutils certbot lego iproute2 nftables conntrack util-linux procps prometheus
      pdns-server pdns-backend-sqlite3 ansible)
# Only tests: headless Chromium renders the status page; ansible-lint
# checks the playbook.
# debootstrap and systemd-container: the systemd hosts of
# `provision --infra nspawn` (internal/nspawntest).
if [ "$MODE" = test ]; then
  PKGS+=(chromium ansible-lint debootstrap systemd-container)
fi
phase "apt packages"

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
  # systemd-container at the version of the machine's systemd, so
  # installing it upgrades nothing (its libnss-mymachines is a
  # recommendation: not installed).
  sysv=$(dpkg-query -W -f='${Version}' systemd 2>/dev/null || true)
  for i in "${!missing[@]}"; do
    if [ "${missing[$i]}" = systemd-container ] && [ -n "$sysv" ]; then missing[$i]="systemd-container=$sysv"; fi
  done
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packages' own services are not used (the lab runs private instances
# on its own addresses); stop any that the install started.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  for svc in mariadb redis-server named knot pdns prometheus prometheus-node-exporter; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
fi

phase "Go and Terraform"
# Terraform: the machine image provides it (its registry is unreachable;
# cairn never downloads Terraform or providers). The provision tests fail
# without it.
command -v terraform >/dev/null || echo "deps: warning: terraform not on PATH; go test ./provision/ will fail (install Terraform 1.x from your mirror)" >&2

# Go: the machine image provides it; cairn pins its toolchain to what is there.
command -v go >/dev/null || { echo "deps: Go 1.26 is required (https://go.dev/doc/install); not found on PATH" >&2; exit 1; }
export GOTOOLCHAIN=local
gov=$(go env GOVERSION)
case "$gov" in go1.2[6-9]*|go1.[3-9]*) ;; *) echo "deps: Go >= 1.26 required, found $gov" >&2; exit 1;; esac

if [ "$MODE" = lab ]; then
  phase done
  echo "deps: ok (lab)"
  exit 0
fi

# Test-only pinned Go tools, into .tools/bin (git-ignored). The drills
# find lego v5 there through bin/cairn (../.tools/bin) or PATH; without
# it they skip that client and say so in the report.
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"
phase staticcheck
STATICCHECK_VERSION=v0.8.0   # honnef.co/go/tools 2026.x; newest the module proxy serves for go 1.26
if ! "$TOOLS/staticcheck" -version 2>/dev/null | grep -qF "(${STATICCHECK_VERSION#v})"; then
  echo "deps: go install staticcheck@$STATICCHECK_VERSION"
  GOBIN="$TOOLS" GOFLAGS=-buildvcs=false go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi

phase pebble
# Pebble (RFC 8555 test server): the probes' client logic is tested against it.
PEBBLE_VERSION=v2.10.1
if [ ! -x "$TOOLS/pebble" ]; then
  echo "deps: go install pebble@$PEBBLE_VERSION"
  GOBIN="$TOOLS" GOFLAGS=-buildvcs=false go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$PEBBLE_VERSION"
fi

phase "lego v5"
# lego v5, the newest the module proxy can build (v5.4+ need dependency
# versions it refuses), through the tools module in tools/lego (go install
# cannot: the proxy refuses its version list). Drills renew with it using
# default flags (ARI on). A few minutes the first time.
LEGO5_VERSION=v5.3.1
if ! "$TOOLS/lego5" --version 2>/dev/null | grep -qF "version $LEGO5_VERSION"; then
  echo "deps: go build lego $LEGO5_VERSION (tools/lego)"
  (cd tools/lego && GOFLAGS=-buildvcs=false go build -o "$TOOLS/lego5" github.com/go-acme/lego/v5)
fi

phase done
# Boulder binaries (ceremony, later boulder itself) are built by cairn on
# first use at the version pinned in go.mod, into ~/.cache/cairn/.
echo "deps: ok"
