#!/bin/bash
# The xen tier by hand (docs/xen-tier.md): Xen 4.17 nested under
# qemu-system-x86_64 (TCG), a Debian dom0 running this host's xen-utils-4.17
# and .venv, scenarios with real guests.
#
#   scripts/xen-tier.sh                  the tier as `make test` runs it (pytest tests/xen)
#   scripts/xen-tier.sh --build          fetch and build both hypervisors, the kernel, the
#                                        initramfs into build/xen/ (cached; once per machine)
#   scripts/xen-tier.sh --cmd CMD...     run bash CMD in dom0 on Debian's hypervisor
#   scripts/xen-tier.sh --shadow-cmd CMD...  the same on the shadow-paging build (PV guests)
#
# Needs the Debian packages of scripts/install-deps.sh (qemu-system-x86,
# busybox-static, xen-utils-4.17, dpkg-dev, flex, bison) and apt lists the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
case "${1:-}" in
  "")           exec "$PY" -m pytest tests/xen ;;
  --build)      "$PY" -m tests.xen.xenvm build && exec "$PY" -m tests.xen.xenvm build --shadow ;;
  --cmd)        shift; exec "$PY" -m tests.xen.xenvm run -- "$@" ;;
  --shadow-cmd) shift; exec "$PY" -m tests.xen.xenvm run --shadow -- "$@" ;;
  *)            sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
