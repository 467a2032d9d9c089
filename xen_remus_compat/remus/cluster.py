"""``remus-receiver --failover=cluster``: the backup waits for the cluster.

xl's own Remus failover (the stream stops: rename ``NAME--incoming`` to
``NAME``, unpause) decides on a socket, with no quorum and no fencing.
Under Pacemaker the OCF agent ``ocf:xen-remus-compat:remus`` (ocf/remus)
runs the receiver with ``--failover=cluster``; then, when the stream stops,

* :func:`hold_paused` takes one more system-controller pause of the
  incoming domain before xl's input is closed.  xl's Remus failover path
  ignores its ``-p`` and unpauses unconditionally (tools/xl/xl_migrate.c);
  Xen counts the toolstack's pauses (``controller_pause_count``, since
  4.5), so xl's unpause only gives back its own and the domain stays
  paused until the agent's promote runs ``xl unpause``;
* :func:`record_state` (``--state-dir``) writes what the backup now holds,
  ``DIR/DOMAIN.state``, for the agent's promotion score and, with the
  simulated backup, as the observable "paused" state that promote resumes.

docs/decisions.md, "Remus under Pacemaker".
"""
from __future__ import annotations

import re
import subprocess
import time

from ..log import logger
from ..stream import xl as xlstream


def _name(name) -> str:
    text = xlstream.shown(name or "<unnamed>")
    return text if len(text) <= 80 else text[:80] + "..."


def hold_paused(xl: str, session, progress) -> bool:
    """Pause ``NAME--incoming`` once more (stream stopped, xl's input still
    open); True when it is held.  Nothing to hold after a clean end or
    before the first complete checkpoint."""
    if progress.ended or progress.checkpoints < 1:
        return False
    name = f"{session.domain}--incoming"
    try:
        p = subprocess.run([xl, "pause", name], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        logger.error("domain '%s': cannot hold it paused (%s): xl will "
                     "resume it", _name(session.domain), e)
        return False
    if p.returncode != 0:
        logger.error("domain '%s': 'xl pause %s' failed (%s): xl will resume "
                     "it", _name(session.domain), xlstream.shown(name),
                     xlstream.shown(p.stderr.strip()[:200]))
        return False
    logger.info("domain '%s': held paused for the cluster manager "
                "(--failover=cluster)", _name(session.domain))
    return True


def record_state(state_dir: str, s, *, sim: bool, mode: str) -> None:
    """``state_dir/DOMAIN.state``, ``key=value`` lines: ``state=paused``
    (held for the cluster: the last complete checkpoint), ``running``
    (resumed by the failover) or ``none`` (nothing to take over)."""
    if not s.domain:
        return
    from ..atomic import write_atomic
    sm = s.summary
    if sim:
        ok = bool(sm.get("failover_ok"))
        held = ok and mode == "cluster"
        if held:
            logger.info("domain '%s': held paused for the cluster manager "
                        "(--failover=cluster)", _name(s.domain))
    else:
        ok = sm.get("xl_status") == 0
        held = s.held
    state = "paused" if held else ("running" if ok else "none")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", s.domain).lstrip(".") or "_"
    text = "".join(f"{k}={v}\n" for k, v in (
        ("domain", _name(s.domain).replace("\n", " ")), ("state", state),
        ("checkpoints", sm.get("checkpoints") or 0), ("failover", mode),
        ("peer", s.peer), ("ended", s.why_ended().replace("\n", " ")),
        ("time", int(time.time()))))
    try:
        write_atomic(f"{state_dir}/{safe}.state", text)
    except OSError as e:
        logger.error("cannot write the state of domain '%s' in %s: %s",
                     _name(s.domain), state_dir, e.strerror)
