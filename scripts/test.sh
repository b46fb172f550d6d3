#!/usr/bin/env bash
# Runs every Flotilla test on a fresh machine that has only the Rust toolchain: installs or
# starts what the tests need (cargo-nextest, the rpm tools, PostgreSQL on 127.0.0.1:5432, a
# Python venv with openapi-spec-validator), then builds the workspace and runs the tests.
# README.md names this script; `.ci/run` calls it after its lint steps.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

command -v cargo >/dev/null || { echo "cargo is missing: install the Rust toolchain (https://rustup.rs)"; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

# Debian packages the tests use: rpm (the rpm inventory collector is tested against real rpm
# databases), PostgreSQL (the storage contract suite), python3-venv (the OpenAPI validator),
# systemd, passwd, dpkg-dev and apt (the desired-state actions run the real systemctl --root,
# useradd --root, dpkg-deb/dpkg-scanpackages/dpkg --root and apt-get on throwaway roots), tmux
# (the session tests drive a real terminal through it), dnf, createrepo-c and apt-utils (Patch
# Manager scans and installs through the real apt-get and dnf on throwaway roots, from file://
# repositories the tests and the demo build with apt-ftparchive and createrepo_c/modifyrepo_c).
apt_missing=()
command -v rpmbuild >/dev/null || apt_missing+=(rpm)
command -v systemctl >/dev/null || apt_missing+=(systemd)
command -v tmux >/dev/null || apt_missing+=(tmux)
command -v useradd >/dev/null || apt_missing+=(passwd)
command -v dpkg-scanpackages >/dev/null || apt_missing+=(dpkg-dev)
command -v apt-get >/dev/null || apt_missing+=(apt)
command -v apt-ftparchive >/dev/null || apt_missing+=(apt-utils)
command -v dnf >/dev/null || apt_missing+=(dnf)
command -v createrepo_c >/dev/null || apt_missing+=(createrepo-c)
command -v pg_ctlcluster >/dev/null || apt_missing+=(postgresql)
command -v curl >/dev/null || apt_missing+=(curl)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_missing+=(python3-venv)
# The email notification tests deliver to a real SMTP server (aiosmtpd, Debian's package).
{ python3 -c 'import aiosmtpd' || /usr/bin/python3 -c 'import aiosmtpd'; } 2>/dev/null || apt_missing+=(python3-aiosmtpd)
if ((${#apt_missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${apt_missing[*]}; run as root or install them: apt-get install ${apt_missing[*]}"; exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

# Every tool above is here and this is root: a test that would skip for want of one fails.
[ "$(id -u)" -eq 0 ] && export FLOTILLA_TEST_REQUIRE_TOOLS=1

# Builds, test databases and the artifact tests need room: say so before they fail on it.
free_kib=$(df -Pk . | awk 'NR == 2 {print $4}')
if [ "${free_kib:-0}" -lt $((8 * 1024 * 1024)) ]; then
  echo "warning: only $((free_kib / 1024)) MiB free here; the build and tests need about 8 GiB"
fi

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432: the storage contract suite needs it"; exit 1; }
export FLOTILLA_TEST_POSTGRES="${FLOTILLA_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"

# A real OpenAPI validator for the API description test.
venv=target/ci-venv
if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'openapi-spec-validator==0.7.*'
fi
export FLOTILLA_OPENAPI_VALIDATOR="${FLOTILLA_OPENAPI_VALIDATOR:-$PWD/$venv/bin/openapi-spec-validator}"

# The same feature set as the tests (dev-dependencies such as tokio test-util are unified
# into them), so nextest finds the build fresh instead of compiling everything a second time.
cargo build --workspace --tests
cargo nextest run --workspace "$@"
