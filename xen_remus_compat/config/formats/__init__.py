"""The formats of a domain configuration, one module each: model <-> text."""
