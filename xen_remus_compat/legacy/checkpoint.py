"""``xen.lowlevel.checkpoint`` (legacy-api.md section 10): the C trampoline.

The extension is ``xen_remus_compat._checkpoint``, built against Debian's
libxen-dev 4.17; this module only gives it its legacy name.  Unlike the
legacy module, importing it blocks no signal.
"""
try:
    from .._checkpoint import checkpointer, error  # noqa: F401
except ImportError as _e:  # pragma: no cover - depends on the build
    raise ImportError(
        "xen.lowlevel.checkpoint: the C extension xen_remus_compat._checkpoint "
        "is not built (%s); run 'make native' or reinstall the package with "
        "libxen-dev present" % _e) from _e

__all__ = ["checkpointer", "error"]
