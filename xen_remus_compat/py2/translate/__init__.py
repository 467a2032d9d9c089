"""Python 2 -> Python 3 in memory with fissix: its standard fixers and ours,
one module per fixer family; :func:`.core.translate` is the way in.

Nothing is imported here: the fixer modules load fissix, which a Python 3
script never needs.
"""

#: the name translated code calls :mod:`xen_remus_compat.py2.runtime` by
#: (``_py2_``, ``_py2__``... when the script has its own ``_py2``)
HELPER = "_py2"
