"""``xen.xend.xenstore``: ``xsutil`` and ``xswatch`` only (legacy-api.md §12.4).

``xstransact`` is not provided; importing it says what replaces it
(:data:`xen_remus_compat.legacy.xend.NOT_PROVIDED`).
"""
