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
  # the xen tier (tests/xen, docs/xen-tier.md): Debian's hypervisor and kernel
  # are fetched with apt-get download; the shadow-paging hypervisor is built
  # from Debian's xen source package (dpkg-source, flex, bison); HVM guests
  # need the device model from qemu-system-xen
  dpkg-dev xz-utils flex bison python3
  qemu-system-xen
  openssh-server openssh-client             
  # the packages (make wheel, make deb; tests/e2e/test_package.py): Debian's
  # packaging tools, the .deb's dependencies (its commands run with Debian's
  # python3), systemd-analyze, bash-completion
  debhelper dh-python lintian fakeroot python3-all-dev python3-setuptools
  python3-lxml python3-pyroute2 python3-fissix
  systemd man-db bash-completion
  # the OCF resource agent (ocf/remus; tests/e2e/test_ocf_agent.py):
  # ocf-tester and ocf-shellfuncs, crm_attribute/crm_master, xmllint, and
  # Pacemaker for the one-node cluster test
  resource-agents pacemaker pacemaker-cli-utils libxml2-utils
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
