"""The package's one named logger (no handlers are installed here)."""
import logging

logger = logging.getLogger("xen_remus_compat")
