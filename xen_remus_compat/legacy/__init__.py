"""legacy layer of xen-remus-compat (see docs/design.md)."""
