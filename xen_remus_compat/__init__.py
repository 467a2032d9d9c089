"""xen-remus-compat: the legacy xen.remus tooling on xl hosts.

Nothing happens at import time: no Xen handles, no logging set-up, no signal
masks.  The package logger is ``logging.getLogger("xen_remus_compat")``.
"""
__version__ = "0.1.0"
