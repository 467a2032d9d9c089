"""Legacy import names next to Debian's own xen package (docs/decisions.md).

Each case runs in a fresh interpreter of the venv (where the .pth hook is
installed), with Debian's Xen Python directory absent, first or last on
sys.path, or added after our names were imported.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import tier_unavailable

DEBIAN_XEN = "/usr/lib/xen-4.17/lib/python"


def run_py(code, pythonpath=None):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def need_debian():
    if not os.path.isfile(os.path.join(DEBIAN_XEN, "xen", "__init__.py")):
        tier_unavailable("unit", f"Debian's Xen Python directory {DEBIAN_XEN} is absent "
                                 "(install xen-utils-4.17)")


LEGACY = """
import xen.remus.vm, xen.remus.save, xen.remus.util
from xen.remus import vif, blkdev
import xen_remus_compat.legacy.vm as ours
assert xen.remus.vm is ours, xen.remus.vm
assert vif.parse({'mac': '0:16:3E:1:2:3'}, 7, 0).mac == '00:16:3e:01:02:03'
print('legacy-ok')
"""

DEBIAN = """
import xen.lowlevel.xc, xen.lowlevel.xs, xen.migration.verify, xen.migration.libxc
assert xen.lowlevel.xc.__file__.startswith('/usr/lib/xen-4.17/'), xen.lowlevel.xc.__file__
print('debian-ok')
"""


def test_without_debian_on_path():
    out = run_py(LEGACY + "import xen\nprint(list(xen.__path__))\n")
    assert "legacy-ok" in out


@pytest.mark.parametrize("order", ["debian-first", "debian-last"])
def test_both_orders(order):
    need_debian()
    pre = f"import sys\nsys.path.{'insert(0, ' if order == 'debian-first' else 'append('}{DEBIAN_XEN!r})\n"
    out = run_py(pre + LEGACY + DEBIAN)
    assert "legacy-ok" in out and "debian-ok" in out


def test_pythonpath_like_debian_scripts():
    need_debian()
    out = run_py(LEGACY + DEBIAN, pythonpath=DEBIAN_XEN)
    assert "legacy-ok" in out and "debian-ok" in out


def test_debian_added_after_our_names():
    need_debian()
    out = run_py(LEGACY + f"import sys\nsys.path.append({DEBIAN_XEN!r})\n" + DEBIAN)
    assert "legacy-ok" in out and "debian-ok" in out


def test_debian_imported_first_then_ours():
    need_debian()
    out = run_py(f"import sys\nsys.path.insert(0, {DEBIAN_XEN!r})\n" + DEBIAN + LEGACY)
    assert "legacy-ok" in out and "debian-ok" in out


def test_unknown_xen_name_still_fails_cleanly():
    out = run_py("""
try:
    import xen.remus.nosuchmodule
except ImportError as e:
    print('import-error', e.name)
""")
    assert "import-error" in out
