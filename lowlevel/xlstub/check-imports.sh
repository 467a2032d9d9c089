#!/bin/sh
# Fail unless libxlstub.so defines every libxenctrl/libxenguest/libxenstore
# function that libxenlight imports: a real one reached with the stub's
# dummy handle would crash or, worse, act.  Usage: check-imports.sh STUB LIBXL
# (see docs/decisions.d/xlstub.md).
set -eu
stub=$1
libxl=$2
# Pure helpers that take no handle: the real implementation is fine.
allowed='xs_path_is_subpath'

want=$(nm -D --undefined-only "$libxl" | awk '{print $2}' | sed 's/@.*//' \
       | grep -E '^(xc_|xs_)' | sort -u)
have=$(nm -D --defined-only "$stub" | awk '{print $3}' | sort -u)
missing=''
for f in $want; do
    case " $allowed " in *" $f "*) continue ;; esac
    echo "$have" | grep -qx "$f" || missing="$missing $f"
done
if [ -n "$missing" ]; then
    echo "check-imports: $libxl imports functions libxlstub does not cover:$missing" >&2
    echo "check-imports: add them to lowlevel/xlstub/deny.def" >&2
    exit 1
fi
echo "check-imports: all $(echo "$want" | wc -w) xc_/xs_ imports of $libxl covered"
