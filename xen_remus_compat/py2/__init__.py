"""Running unchanged Python 2 remus scripts: detection, translation, runtime support."""
