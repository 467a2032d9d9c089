"""The commands legacy scripts run (``xen.remus.util.runcmd``) on an xl host.

xl was made as xm's drop-in, so ``xm SUB`` runs as ``xl SUB`` where the
syntax was kept; with ``--sim`` nothing may touch the host's domains or
network (docs/decisions.md, "Commands the scripts run").
"""
from __future__ import annotations

import os
from typing import Any, Callable, List, Optional

from .. import errors
from ..log import logger

#: xm subcommands xl accepts with the same arguments (xl was made as xm's
#: drop-in); others keep 'xm' and fail as they would on an xl host.
XM_TO_XL = frozenset({
    "destroy", "shutdown", "reboot", "pause", "unpause", "list", "info",
    "dmesg", "mem-set", "mem-max", "vcpu-set", "vcpu-pin", "vcpu-list",
    "console", "create", "save", "restore", "sysrq", "rename", "domid",
    "domname", "uptime", "block-list", "network-list"})
#: commands a simulated run never executes (they would touch the host's network)
SIM_NOOP = frozenset({"ifdown", "ifup"})


class LegacyCommands:
    """The ``util.runcmd`` runner for legacy scripts (legacy-api.md §1.4, §15).

    ``xm SUB ...`` becomes ``xl SUB ...`` for the subcommands in
    :data:`XM_TO_XL` (after an optional ``sudo``).  With ``sim=True``,
    ``xm|xl destroy DOM`` destroys the simulated guest and
    ``ifdown``/``ifup`` are not run (the legacy ``die()`` runs ``sudo
    ifdown eth2``); both are logged.  Everything else runs for real.
    """

    def __init__(self, *, sim: bool = False, run: Optional[Callable] = None,
                 destroy: Optional[Callable[[Any], None]] = None,
                 xl: Optional[str] = None) -> None:
        from .. import runner
        self.sim = sim
        self.run = run or runner.run
        self.destroy = destroy
        self.xl = xl
        self.log: List[List[str]] = []

    def _xl(self) -> str:
        if self.xl is None:
            from ..sources.xlcli import find_xl
            try:
                self.xl = find_xl()
            except errors.CompatError:
                self.xl = "xl"
        return self.xl

    def __call__(self, argv, *, cwd=None, **kw):
        from ..runner import Result
        args = list(argv)
        i = 1 if args[:1] == ["sudo"] else 0
        cmd = args[i] if i < len(args) else ""
        if cmd == "xm" and i + 1 < len(args) and args[i + 1] in XM_TO_XL:
            args[i] = self._xl()
            cmd = "xl"
            logger.info("run-legacy: %s -> %s", " ".join(argv), " ".join(args))
        if self.sim:
            sub = args[i + 1] if i + 1 < len(args) else ""
            if cmd in SIM_NOOP:
                logger.info("run-legacy --sim: not running %s", " ".join(argv))
                self.log.append(list(argv))
                return Result(list(argv), 0, "", "")
            if cmd in ("xl", "xm") or os.path.basename(cmd) == "xl":
                if sub == "destroy" and i + 2 < len(args):
                    (self.destroy or _sim_destroy)(args[i + 2])
                    self.log.append(list(argv))
                    return Result(list(argv), 0, "", "")
        self.log.append(args)
        return self.run(args, cwd=cwd, **kw)


def _sim_destroy(ref: Any) -> None:
    from ..sim import simxen
    from .. import sources
    domid = sources.open_domain(ref, "sim").domid
    simxen.destroy(int(domid))
