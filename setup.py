"""Build glue: metadata lives in setup.cfg; this file only adds C parts."""
from setuptools import Extension, setup

CHECKPOINT = Extension(
    "xen_remus_compat._checkpoint",
    sources=["lowlevel/checkpoint/checkpoint.c",
             "lowlevel/checkpoint/libcheckpoint.c"],
    depends=["lowlevel/checkpoint/libcheckpoint.h"],
    libraries=["xenctrl", "xenguest", "xenstore", "xenevtchn", "pthread"],
    extra_compile_args=["-Wall", "-Wextra", "-Wno-missing-field-initializers"],
)

setup(ext_modules=[CHECKPOINT])
