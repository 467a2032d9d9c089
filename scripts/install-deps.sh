#!/bin/bash
# Install the Debian packages the build and the test tiers need, only those
# missing.  Runs as root on a fresh Debian bookworm machine (CI, developer).
set -euo pipefail
PKGS=(
  libxen-dev xen-utils-4.17 
  libyajl-dev               
  gcc make pkg-config python3-dev
  iproute2 kmod
  qemu-system-x86 busybox-static
  openssh-server openssh-client             
)
missing=()
for p in "${PKGS[@]}"; do
  case "$p" in \#*) continue;; esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all Debian packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing Debian packages (${missing[*]}) and not root; install them first" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Install packages only: no service may start (xen-utils would try xen
# daemons, openssh-server a system sshd on port 22; the tests start their
# own). policy-rc.d is Debian's documented switch for that.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  added_policy=1
fi
trap '[ "$added_policy" = 1 ] && rm -f "$policy"' EXIT
# xen-utils' maintainer scripts complain that no hypervisor is present; that is expected here.
apt-get install -y -qq --no-install-recommends "${missing[@]}"
