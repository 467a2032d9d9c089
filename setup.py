"""Build glue: metadata lives in setup.cfg; this file adds what setup.cfg
cannot say (docs/decisions.md, "Packaging"):

* the C extension (the checkpoint trampoline, linked against Debian's
  libxenctrl/libxenguest);
* the .pth hook that maps the legacy ``xen.*`` names (docs/decisions.md,
  "Imports under the legacy names");
* the simulated Xen's libraries (lowlevel/simxen, built with its own
  makefile) as package data in ``xen_remus_compat/sim/lib``, so that
  ``remus --sim`` and ``xen-remus-compat demo`` work from a wheel or the
  Debian package alone;
* data files: man pages, the systemd units, bash completions and the OCF
  resource agent (ocf/remus).
"""
import os
import shutil
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PTH = "xen_remus_compat-xen.pth"
#: where the simxen stand-ins go inside the package (sim/simxen.py lib_dir())
SIMXEN_PKGDIR = os.path.join("xen_remus_compat", "sim", "lib")
#: sim/simxen.py LIBRARIES, plus nothing else: these files are shipped
SIMXEN_LIBS = ("libsimxen.so.0", "libxenctrl.so.4.17", "libxenevtchn.so.1",
               "libxenstore.so.4", "libxenguest.so.4.17")

CHECKPOINT = Extension(
    "xen_remus_compat._checkpoint",
    sources=["lowlevel/checkpoint/checkpoint.c",
             "lowlevel/checkpoint/libcheckpoint.c",
             "lowlevel/checkpoint/suspend.c",
             "lowlevel/checkpoint/threads.c",
             "lowlevel/checkpoint/capture.c"],
    depends=["lowlevel/checkpoint/libcheckpoint.h",
             "lowlevel/checkpoint/cpinternal.h",
             "lowlevel/checkpoint/capture.h"],
    libraries=["xenctrl", "xenguest", "xenstore", "xenevtchn", "pthread"],
    extra_compile_args=["-Wall", "-Wextra", "-Wno-missing-field-initializers"],
)

COMMANDS = ("xen-remus-compat", "remus", "remus-receiver")
DATA_FILES = [
    ("share/man/man1", [f"docs/{c}.1" for c in COMMANDS]),
    # one copy of each unit; ExecStart= names the command without a path,
    # which systemd looks up in /usr/local/bin then /usr/bin (pip as root,
    # the Debian package); debian/rules moves them to /lib/systemd/system
    ("lib/systemd/system", ["systemd/remus@.service",
                            "systemd/remus-receiver.service",
                            "systemd/remus-receiver.socket"]),
    ("share/bash-completion/completions", [f"completions/{c}" for c in COMMANDS]),
    # the OCF resource agent ocf:xen-remus-compat:remus (Pacemaker looks in
    # /usr/lib/ocf/resource.d: the Debian package; pip as root puts it under
    # /usr/local, migration_guide.md "Remus under Pacemaker" says to link it)
    ("lib/ocf/resource.d/xen-remus-compat", ["ocf/remus"]),
    # the messages of the commands point at the migration guide
    ("share/doc/xen-remus-compat", ["migration_guide.md"]),
    ("share/doc/xen-remus-compat/examples", ["systemd/remus.default",
                                             "systemd/domain.conf.example"]),
]


class build_py_with_pth(build_py):
    """Also install the .pth file at the top of site-packages."""

    def run(self):
        super().run()
        self.copy_file(os.path.join(HERE, PTH), os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


class build_ext_with_simxen(build_ext):
    """Also build lowlevel/simxen (its makefile, the one ``make native``
    uses) and copy the libraries into the package.  Not in place: an
    editable install or ``build_ext --inplace`` in the source tree uses
    build/simxen, which ``make native`` builds."""

    def run(self):
        super().run()
        if self.inplace or getattr(self, "editable_mode", False):
            return
        dest = os.path.join(self.build_lib, SIMXEN_PKGDIR)
        self.mkpath(dest)
        for path in self._build_simxen():
            self.copy_file(path, os.path.join(dest, os.path.basename(path)))

    def _build_simxen(self):
        build = os.path.abspath(os.path.join(self.build_temp, "lowlevel"))
        cmd = [os.environ.get("MAKE", "make"), "-C", os.path.join(HERE, "lowlevel"),
               "simxen", f"BUILD={build}"]
        # Debian's build flags (dpkg-buildflags via pybuild): the makefile
        # compiles and links in one step with CFLAGS, so the linker flags
        # (relro, now) go there too
        flags = [os.environ.get(v, "") for v in ("CFLAGS", "CPPFLAGS", "LDFLAGS")]
        if any(flags):
            cmd.append("CFLAGS=" + " ".join(f for f in flags + ["-fPIC"] if f))
        if shutil.which(cmd[0]) is None:
            raise SystemExit(f"setup.py: '{cmd[0]}' not found; it builds the "
                             "simulated Xen libraries (lowlevel/simxen)")
        self.announce(" ".join(cmd), level=2)
        subprocess.run(cmd, check=True)
        return [os.path.join(build, "simxen", name) for name in SIMXEN_LIBS]

    def get_outputs(self):
        outputs = super().get_outputs()
        if self.inplace or getattr(self, "editable_mode", False):
            return outputs
        return outputs + [os.path.join(self.build_lib, SIMXEN_PKGDIR, name)
                          for name in SIMXEN_LIBS]


setup(ext_modules=[CHECKPOINT], data_files=DATA_FILES,
      cmdclass={"build_py": build_py_with_pth, "build_ext": build_ext_with_simxen})
