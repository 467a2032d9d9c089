"""Running unchanged Python 2 remus scripts: :mod:`.run` (the entry the CLI
uses), :mod:`.detect`, :mod:`.translate`, :mod:`.runtime` (what translated
scripts import as ``_py2``) and :mod:`.xmxl` (xm commands on an xl host)."""
