#!/bin/bash
# The qemu tier by hand (docs/decisions.d/qemu.md): Debian's kernel under
# qemu-system-x86_64 (TCG), the host's / read-only over 9p, the network
# buffering tests run inside against the real sch_plug.
#
#   scripts/qemu-tier.sh               the tier as `make test` runs it (host-side pytest)
#   scripts/qemu-tier.sh --fetch       fetch the kernel into build/qemu/ and build the initramfs
#   scripts/qemu-tier.sh --refresh     fetch the kernel again (newer linux-image-amd64)
#   scripts/qemu-tier.sh --inside ARGS run the in-VM pytest directly, e.g. -k epochs -x
#   scripts/qemu-tier.sh --linux       also run tests/linux/test_netbuf_netns.py inside (~80 s more)
#   scripts/qemu-tier.sh --cmd CMD...  run CMD inside the VM (cwd: this checkout)
#
# Needs the Debian packages qemu-system-x86 and busybox-static, and apt lists
# (apt-get update) the first time, to download linux-image-amd64.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
INSIDE=("$PY" -m pytest -p no:cacheprovider -q)
case "${1:-}" in
  "")        exec "$PY" -m pytest tests/qemu ;;
  --fetch)   exec "$PY" -m tests.qemu.vm --fetch-only ;;
  --refresh) exec "$PY" -m tests.qemu.vm --fetch-only --refresh ;;
  --inside)  shift; exec "$PY" -m tests.qemu.vm -- "${INSIDE[@]}" tests/qemu/inside "$@" ;;
  --linux)   shift; exec "$PY" -m tests.qemu.vm -- "${INSIDE[@]}" tests/qemu/inside \
                 tests/linux/test_netbuf_netns.py "$@" ;;
  --cmd)     shift; exec "$PY" -m tests.qemu.vm -- "$@" ;;
  *)         sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
