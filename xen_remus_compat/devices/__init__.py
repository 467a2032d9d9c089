"""Output-commit devices: network buffering, DRBD and block-remus disks."""
