#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it.
#   bash tools/test.sh            # the whole suite (what CI runs)
#   bash tools/test.sh tests/os   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages for the real targets: full-system QEMU, Bochs, Chromium for the HTML
# report's browser test, the toolchain for the test kernel, the malloc libraries, and
# redis-server for the shared Hypothesis example database's test.
APT_PACKAGES="cpio qemu-system-x86 qemu-user user-mode-linux linux-image-amd64 bochs bochsbios vgabios bochs-term chromium gcc binutils libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 redis-server"
missing=""
for p in $APT_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing system packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "== missing system packages:$missing (install them with apt-get as root); the tests that need them will fail" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
# every peer is required here: a missing one fails its tests (a plain local pytest skips them)
export MEMSPEC_REQUIRE_PEERS=1
# every test, the slow ones too (a plain local pytest leaves those out: see pyproject.toml)
exec .venv/bin/python -m pytest -n 2 -m "slow or not slow" "$@"
