"""Put a finished plan on disk, all or nothing.

The files are written as one batch (:func:`atomic.write_all`): all temporary
files first, then the renames, so an error anywhere (an existing file
without ``force``, ENOSPC) leaves OUTDIR as it was.
"""
from __future__ import annotations

import os
from typing import List, Sequence

from .. import atomic, errors
from .inputs import os_error
from .plan import ConversionPlan, check_overwrites, prepare


def ensure_outdir(outdir: str) -> None:
    """Create OUTDIR (and its parents) if missing; errors are input errors."""
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, outdir) from exc


def write(plan: ConversionPlan, *, force: bool = False) -> List[str]:
    """Write the planned files (new and changed ones) as one batch."""
    todo = [f for f in plan.files if f.status != "unchanged"]
    if not todo:
        return []
    ensure_outdir(plan.outdir)
    try:
        done = atomic.write_all(((f.path, f.content) for f in todo),
                                overwrite=force)
    except FileExistsError as exc:
        # Someone created the file between our check and our link(2).
        raise errors.OutputExistsError(
            "file appeared while writing; use --force to overwrite",
            source=exc.filename or plan.outdir) from exc
    except OSError as exc:
        committed = getattr(exc, "committed", [])
        err = os_error(exc, exc.filename or plan.outdir)
        if committed:
            err.message += f" (already written: {', '.join(committed)})"
        raise err from exc
    plan.written = done
    return done


def convert(inputs: Sequence[str], outdir: str, *, remus: str = "script",
            lenient: bool = False, with_json: bool = False,
            force: bool = False, dry_run: bool = False) -> ConversionPlan:
    """The whole pipeline: :func:`.plan.prepare`, check, and (unless
    ``dry_run``) :func:`write`."""
    plan = prepare(inputs, outdir, remus=remus, lenient=lenient,
                   with_json=with_json)
    if not dry_run:
        check_overwrites(plan.files, force)
        write(plan, force=force)
    return plan
