"""Device specification grammars: disks (legacy xend unames and the xl disk
grammar, libxl disk fields, the remus target), vifs, PCI devices."""
