"""Build glue: metadata lives in setup.cfg; this file only adds the C
extension and the .pth hook that maps the legacy ``xen.*`` names
(docs/decisions.md, "Imports under the legacy names")."""
import os

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

PTH = "xen_remus_compat-xen.pth"

CHECKPOINT = Extension(
    "xen_remus_compat._checkpoint",
    sources=["lowlevel/checkpoint/checkpoint.c",
             "lowlevel/checkpoint/libcheckpoint.c"],
    depends=["lowlevel/checkpoint/libcheckpoint.h"],
    libraries=["xenctrl", "xenguest", "xenstore", "xenevtchn", "pthread"],
    extra_compile_args=["-Wall", "-Wextra", "-Wno-missing-field-initializers"],
)


class build_py_with_pth(build_py):
    """Also install the .pth file at the top of site-packages."""

    def run(self):
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


setup(ext_modules=[CHECKPOINT], cmdclass={"build_py": build_py_with_pth})
