"""What ``convert`` tells the operator: per domain the files written, the
remus-disk notes and every untranslated key with its reason, and the diff of
a file it would change.  Values can be megabytes, so items are abbreviated.
"""
from __future__ import annotations

import difflib
import textwrap
from typing import Dict, List

from ..config.formats.xlcfg import comment_text
from .plan import ConversionPlan, PlannedFile

# Longest key, and longest item, shown in the report before it is abbreviated.
_REPORT_VALUE_MAX = 72
_REPORT_ITEM_MAX = 600


def _short(text: str, limit: int = _REPORT_VALUE_MAX) -> str:
    """One line, abbreviated past ``limit`` (values can be megabytes); input
    text never brings a control character (ESC, a line separator) to the
    terminal."""
    text = comment_text(" ".join(str(text).split()))
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return text


def _wrapped(text: str, indent: int = 4, hang: int = 6) -> List[str]:
    """A report item wrapped to 78 columns; hanging indent for the rest."""
    return textwrap.wrap(_short(text, _REPORT_ITEM_MAX), width=78,
                         initial_indent=" " * indent,
                         subsequent_indent=" " * hang,
                         break_long_words=False, break_on_hyphens=False) or [""]


_STATUS_VERB = {
    # (dry_run, status) -> verb
    (True, "new"): "would write",
    (True, "changed"): "would overwrite",
    (True, "unchanged"): "unchanged",
    (False, "new"): "wrote",
    (False, "changed"): "overwrote",
    (False, "unchanged"): "unchanged",
}


def format_report(plan: ConversionPlan, *, dry_run: bool = False,
                  force: bool = False) -> str:
    """The human summary: per domain the files, the remus-disk notes and
    every untranslated key with its reason."""
    lines: List[str] = []
    by_domain: Dict[str, List[PlannedFile]] = {}
    for item in plan.files:
        by_domain.setdefault(item.domain, []).append(item)
    for res in plan.results:
        if lines:
            lines.append("")
        lines.append(f"{res.name}  (from {res.source})")
        for item in by_domain.get(res.name, []):
            verb = _STATUS_VERB[(dry_run, item.status)]
            note = ("  (exists and differs: needs --force)"
                    if dry_run and item.status == "changed" and not force else "")
            lines.append(f"  {verb} {item.path}{note}")
        if res.pvh_notes:
            lines.append("  PVH:")
            for note in res.pvh_notes:
                lines.extend(_wrapped(note))
        if res.disk_notes:
            lines.append("  disk notes:")
            for note in res.disk_notes:
                lines.extend(_wrapped(note))
        if res.untranslated:
            lines.append(f"  untranslated ({len(res.untranslated)}):")
            for key, reason in res.untranslated:
                lines.extend(_wrapped(f"{_short(key)}: {reason}"))
        else:
            lines.append("  untranslated: none")
    if lines:
        lines.append("")
    for what, why in plan.skipped:
        lines.append(f"skipped {what}: {why}")
    changed = sum(1 for f in plan.files if f.status != "unchanged")
    with_gaps = sum(1 for r in plan.results if r.untranslated)
    verb = "would write" if dry_run else "wrote"
    lines.append(
        f"summary: {len(plan.results)} domain(s) converted, {verb} "
        f"{changed} file(s) in {plan.outdir}, {plan.untranslated_count} "
        f"untranslated key(s) in {with_gaps} domain(s)"
        + (" (dry run: nothing written)" if dry_run else ""))
    return "\n".join(lines) + "\n"


def unified_diff(item: PlannedFile) -> str:
    """``diff -u`` of the current file (or /dev/null) against the new one."""
    old = (item.old or "").splitlines(keepends=True)
    new = item.content.splitlines(keepends=True)
    before = item.path if item.exists else "/dev/null"
    text = "".join(difflib.unified_diff(old, new, fromfile=before,
                                        tofile=item.path))
    if item.old_unreadable:
        text = f"(existing {item.path} is not UTF-8 text; shown as empty)\n" + text
    return text
