#!/bin/bash
# Build the wheel and/or the Debian package of this work tree into build/pkg/
# (`make wheel`, `make deb`; tests/e2e/test_package.py).
#
#   scripts/build-package.sh wheel|deb|all
#
# The sources are the work tree's tracked and new files (not the ignored
# ones: build/, .venv/) that make the packages, copied to
# build/pkg/src/xen-remus-compat-VERSION, so that a build never writes into
# the work tree and dpkg-buildpackage's results (written to the parent
# directory) stay under build/pkg.  A build is skipped when the same sources
# were built before (a hash of their names and contents) and its results are
# still there.
#
# Results: build/pkg/dist/*.whl; build/pkg/*.deb and build/pkg/lintian.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=build/pkg
PYTHON=${PYTHON:-python3}
kind=${1:-all}
case "$kind" in wheel|deb|all) ;; *) echo "usage: $0 wheel|deb|all" >&2; exit 1;; esac

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' xen_remus_compat/__init__.py)
[ -n "$version" ] || { echo "build-package: no __version__ in xen_remus_compat/__init__.py" >&2; exit 1; }
mkdir -p "$OUT"
list=$OUT/sources.list
# only what goes into a package (tests and prose changing do not rebuild it)
git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
  case "$f" in
    setup.py|setup.cfg|pyproject.toml|MANIFEST.in|README.md|migration_guide.md|*.pth) ;;
    xen_remus_compat/*|lowlevel/*|systemd/*|completions/*|debian/*|docs/*.1|ocf/*) ;;
    *) continue ;;
  esac
  if [ -L "$f" ] || [ -f "$f" ]; then printf '%s\0' "$f"; fi
done > "$list"
hash=$( { tr '\0' '\n' < "$list"
          while IFS= read -r -d '' f; do
            if [ -L "$f" ]; then printf '%s -> %s\n' "$f" "$(readlink "$f")"; fi
          done < "$list"
          while IFS= read -r -d '' f; do
            if [ ! -L "$f" ]; then printf '%s\0' "$f"; fi
          done < "$list" | xargs -0 sha256sum
        } | sha256sum | cut -d' ' -f1)
src=$OUT/src/xen-remus-compat-$version

fresh() {   # fresh KIND: were these sources built for KIND, results present?
  [ "$(cat "$OUT/$1.stamp" 2>/dev/null)" = "$hash" ] || return 1
  case "$1" in
    wheel) compgen -G "$OUT/dist/xen_remus_compat-$version-*.whl" >/dev/null ;;
    deb) [ -f "$OUT/xen-remus-compat_${version}_$(dpkg --print-architecture).deb" ] \
           && [ -f "$OUT/lintian.txt" ] ;;
  esac
}

copy_sources() {
  [ "$(cat "$OUT/src.stamp" 2>/dev/null)" = "$hash" ] && [ -d "$src" ] && return 0
  rm -rf "$OUT/src"
  mkdir -p "$src"
  xargs -0 cp -P --parents -t "$src" < "$list"
  echo "$hash" > "$OUT/src.stamp"
}

build_wheel() {
  if fresh wheel; then echo "build-package: wheel up to date"; return 0; fi
  copy_sources
  rm -rf "$OUT/dist" "$src/build"
  echo "build-package: pip wheel $src"
  "$PYTHON" -m pip wheel -q --no-deps -w "$OUT/dist" "$src"
  echo "$hash" > "$OUT/wheel.stamp"
}

build_deb() {
  if fresh deb; then echo "build-package: Debian package up to date"; return 0; fi
  copy_sources
  rm -f "$OUT"/*.deb "$OUT"/*.changes "$OUT"/*.buildinfo "$OUT/lintian.txt"
  rm -rf "$src/build" "$src/.pybuild" "$src/debian/xen-remus-compat" "$src/debian/.debhelper"
  echo "build-package: dpkg-buildpackage -us -uc -b in $src"
  # Debian's own interpreter and tools only (not a python3 earlier on PATH)
  ( cd "$src" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b ) \
    > "$OUT/dpkg-buildpackage.log" 2>&1 || {
      tail -40 "$OUT/dpkg-buildpackage.log" >&2
      echo "build-package: dpkg-buildpackage failed (log: $OUT/dpkg-buildpackage.log)" >&2
      exit 1; }
  mv "$OUT"/src/*.deb "$OUT"/src/*.changes "$OUT"/src/*.buildinfo "$OUT"/
  # every tag down to pedantic; the test fails on E: (errors) only
  debs=("$OUT"/xen-remus-compat_"$version"_*.deb)
  echo "build-package: lintian ${debs[*]}"
  PATH=/usr/sbin:/usr/bin:/sbin:/bin lintian --display-info --pedantic "${debs[@]}" \
    > "$OUT/lintian.txt" 2>&1 || true
  for level in E W I P; do
    printf 'build-package: lintian %s: %s\n' "$level" "$(grep -c "^$level: " "$OUT/lintian.txt")"
  done
  echo "$hash" > "$OUT/deb.stamp"
}

case "$kind" in
  wheel) build_wheel ;;
  deb) build_deb ;;
  all) build_wheel; build_deb ;;
esac
