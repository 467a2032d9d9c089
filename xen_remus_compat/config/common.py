"""Value helpers every format shares: UUIDs, CPU lists, vcpu bitmaps,
shutdown actions, libxl defbools.  Plain functions over plain values (no
I/O, no format syntax), so that the readers of xend sxprs
(``formats/sxpr.py``) and of libxl JSON (``formats/libxl_json.py``) put the
same input into the same model fields.

Where the two readers used to disagree, the rule is written here once:

* **vcpu hard affinity** (:func:`affinity_fields`): per-vcpu CPU sets are
  compared as sets; no CPU at all in every set means "no pinning", not an
  empty ``cpus`` (xend ``_convert_cpus_to_list``; libxl
  ``vcpu_hard_affinity``, xl-side.md 4.2);
* **online vcpus** (:func:`online_vcpus`): bits of the availability bitmap
  at or above ``vcpus`` are not vcpus (xend ``vcpu_avail``, libxl
  ``avail_vcpus``);
* **framebuffer kind** (:func:`vfb_type`): SDL without VNC is an SDL
  framebuffer, decided once every key is read, in whatever order the keys
  came.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from .model import Vfb

__all__ = ["canonical_uuid", "format_cpulist", "parse_cpulist", "affinity_fields",
           "online_vcpus", "vfb_type", "defbool", "ACTIONS", "ACTIONS_TO_LIBXL",
           "LIBXL_TO_ACTION", "SHUTDOWN_KEYS", "libxl_action", "xl_action",
           "TIMER_MODES", "TSC_MODES", "MEMKB"]

#: KiB per MiB: the model is MiB, libxl JSON is KiB (``MemKB``).
MEMKB = 1024

# --------------------------------------------------------------------------
# UUIDs
# --------------------------------------------------------------------------

_UUID_HEX = re.compile(r"^[0-9a-fA-F]{32}$")


def canonical_uuid(value: str) -> Optional[str]:
    """Dashed lower case, from 32 hex digits with or without dashes."""
    compact = value.strip().replace("-", "")
    if not _UUID_HEX.match(compact):
        return None
    c = compact.lower()
    return f"{c[:8]}-{c[8:12]}-{c[12:16]}-{c[16:20]}-{c[20:]}"


# --------------------------------------------------------------------------
# CPU lists and vcpu bitmaps
# --------------------------------------------------------------------------

def format_cpulist(bits: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (xl CPULIST)."""
    out: List[str] = []
    run: List[int] = []
    for b in sorted(set(bits)):
        if run and b == run[-1] + 1:
            run.append(b)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [b]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


_CPU_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_cpulist(text: str) -> Optional[List[int]]:
    """The CPU numbers of a plain CPULIST (``"0-3,^1,5"``); None when it
    needs the host (``all``, ``node:``/``nodes:``), so it cannot be
    evaluated here."""
    have: List[int] = []
    drop: List[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        target = have
        if part.startswith("^"):
            target, part = drop, part[1:]
        m = _CPU_RANGE.match(part)
        if not m:
            return None
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            return None
        target.extend(range(lo, hi + 1))
    return [c for c in sorted(set(have)) if c not in drop]


def affinity_fields(per_vcpu: Sequence[Iterable[int]]
                    ) -> Tuple[Optional[str], List[str]]:
    """``(cpus, vcpu_affinity)`` for the model from one CPU set per vcpu.

    The same set for every vcpu is ``cpus`` (one CPULIST for all vcpus, as
    xl.cfg ``cpus="..."`` says it); different sets are one CPULIST per vcpu,
    ``"all"`` for a vcpu without pinning; no CPU in any set is no pinning.
    """
    sets = [sorted(set(cpus)) for cpus in per_vcpu]
    if not any(sets):
        return None, []
    if all(s == sets[0] for s in sets):
        return format_cpulist(sets[0]), []
    return None, [format_cpulist(s) if s else "all" for s in sets]


def online_vcpus(avail: int, vcpus: Optional[int]) -> int:
    """How many vcpus the availability bitmap *avail* brings online: its
    bits below ``vcpus`` (every bit when the vcpu count is unknown)."""
    if vcpus is not None:
        avail &= (1 << vcpus) - 1
    return bin(avail).count("1")


def vfb_type(vfb: Vfb) -> str:
    """The framebuffer kind once all its keys are read: SDL enabled and VNC
    not is ``sdl`` (xend ``(vfb (sdl 1))``, libxl ``sdl.enable``)."""
    if vfb.sdl and not vfb.vnc:
        return "sdl"
    return vfb.type


def defbool(value: bool) -> str:
    """A libxl ``defbool`` as libxl's JSON generator writes it."""
    return "True" if value else "False"


# --------------------------------------------------------------------------
# Shutdown actions and timer modes
# --------------------------------------------------------------------------

#: One row per action: (model spelling = xend/xl.cfg, libxl
#: ``action_on_shutdown`` enum name).  xend: XendConfig
#: CONFIG_RESTART_MODES; xl.cfg(5) ``on_poweroff``; libxl_types.idl.
_ACTION_ROWS: Tuple[Tuple[str, str], ...] = (
    ("destroy", "destroy"),
    ("restart", "restart"),
    ("rename-restart", "restart_rename"),
    ("preserve", "preserve"),
    ("coredump-destroy", "coredump_destroy"),
    ("coredump-restart", "coredump_restart"),
    ("soft-reset", "soft_reset"),
)

#: Either spelling (model or libxl) -> the model (xend) spelling.
ACTIONS: Dict[str, str] = {**{lib: model for model, lib in _ACTION_ROWS},
                           **{model: model for model, _ in _ACTION_ROWS}}
#: Either spelling -> the libxl enum name.
ACTIONS_TO_LIBXL: Dict[str, str] = {**{lib: lib for _, lib in _ACTION_ROWS},
                                    **{model: lib for model, lib in _ACTION_ROWS}}
#: libxl enum name -> the model spelling.
LIBXL_TO_ACTION: Dict[str, str] = {lib: model for model, lib in _ACTION_ROWS}

#: The shutdown keys of the model and of a libxl_domain_config (xl itself
#: always sets on_reboot=restart and on_soft_reset=soft_reset).
SHUTDOWN_KEYS = ("on_poweroff", "on_reboot", "on_crash")


def libxl_action(action: str) -> str:
    """Model action -> libxl enum name (``rename-restart`` -> ``restart_rename``)."""
    try:
        return ACTIONS_TO_LIBXL[action]
    except KeyError:
        raise ConfigError(f"unknown shutdown action {action!r}") from None


def xl_action(action: str) -> str:
    """Model action -> the xl.cfg spelling (``restart_rename`` -> ``rename-restart``)."""
    return LIBXL_TO_ACTION[libxl_action(action)]


#: libxl_timer_mode, by xend's integer value (xl.cfg(5) timer_mode).
TIMER_MODES = ("delay_for_missed_ticks", "no_delay_for_missed_ticks",
               "no_missed_ticks_pending", "one_missed_tick_pending")

#: libxl_tsc_mode, by xend's integer value (XendConfig ``tsc_mode``:
#: TSC_MODE_DEFAULT, ALWAYS_EMULATE, NEVER_EMULATE, PVRDTSCP; xl.cfg(5)
#: tsc_mode, where native_paravirt "has been removed").
TSC_MODES = ("default", "always_emulate", "native", "native_paravirt")
