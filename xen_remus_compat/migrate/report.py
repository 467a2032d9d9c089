"""What ``convert`` tells the operator: per domain (small batches) the
files written, the remus-disk notes and every reported key with its reason;
for a batch, each reason once with its count; a summary table; the same as
JSON (``--report-json``); and the diff of a file it would change.  Values
can be megabytes, so items are abbreviated.  Keys left at xl's default and
runtime state are not reported (``XlConfig.omitted``; counted, and listed
in the JSON).
"""
from __future__ import annotations

import difflib
import textwrap
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..config.formats.xlcfg import KINDS, comment_text
from .plan import ConversionPlan, DomainResult, PlannedFile

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

#: Up to this many domains the report has a section per domain; above it,
#: only the reasons grouped with counts (the details: --report-json, and the
#: comments in each .cfg).
DETAIL_LIMIT = 10
#: Groups of reasons, example domains, and missing paths shown at most.
GROUP_LIMIT = 25
EXAMPLES = 3
MISSING_LIMIT = 20

#: Report headings of the item kinds, in report order.
_KIND_TITLE = {"rewritten": "rewritten for this host", "flagged": "check",
               "untranslated": "untranslated"}
_KIND_ORDER = ("flagged", "rewritten", "untranslated")

#: ``--report-json`` schema name (docs/xen-remus-compat.1, "REPORT JSON").
JSON_SCHEMA = "xen-remus-compat/convert-report/1"


def _items(res: DomainResult, kind: str) -> list:
    return [i for i in res.items if i.kind == kind]


def _domain_section(res: DomainResult, files: List[PlannedFile], *, dry_run: bool,
                    force: bool) -> List[str]:
    lines = [f"{res.name}  (from {res.source})"]
    for item in files:
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
    if res.missing:
        lines.append("  not on this host:")
        for key, path in res.missing:
            lines.extend(_wrapped(f"{_short(key)} {path}"))
    for kind in ("flagged", "rewritten"):
        items = _items(res, kind)
        if items:
            lines.append(f"  {_KIND_TITLE[kind]}:")
            for i in items:
                change = f" -> {i.new}" if kind == "rewritten" and i.new else ""
                lines.extend(_wrapped(f"{_short(i.key)}{change}: {i.reason}"))
    if res.untranslated:
        lines.append(f"  untranslated ({len(res.untranslated)}):")
        for key, reason in res.untranslated:
            lines.extend(_wrapped(f"{_short(key)}: {reason}"))
    else:
        lines.append("  untranslated: none")
    return lines


def group_reasons(results: Sequence[DomainResult]) -> List[dict]:
    """Every (kind, reason) with its count, keys and domains, most frequent
    first within each kind (flagged, rewritten, untranslated)."""
    groups: "OrderedDict[Tuple[str, str], dict]" = OrderedDict()
    for res in results:
        for i in res.items:
            g = groups.setdefault((i.kind, i.reason), {
                "kind": i.kind, "reason": i.reason, "count": 0, "keys": [],
                "domains": []})
            g["count"] += 1
            if i.key not in g["keys"]:
                g["keys"].append(i.key)
            if not g["domains"] or g["domains"][-1] != res.name:
                g["domains"].append(res.name)
    return sorted(groups.values(),
                  key=lambda g: (_KIND_ORDER.index(g["kind"]), -g["count"]))


def _counted(count: int, text: str) -> List[str]:
    """``  COUNT  text`` wrapped under the text."""
    return textwrap.wrap(_short(text, _REPORT_ITEM_MAX), width=78,
                         initial_indent=f"  {count:>5}  ", subsequent_indent=" " * 9,
                         break_long_words=False, break_on_hyphens=False)


def _examples(names: Sequence[str]) -> str:
    shown = ", ".join(_short(n, 40) for n in names[:EXAMPLES])
    more = len(names) - EXAMPLES
    return shown + (f" and {more} more" if more > 0 else "")


def _grouped(plan: ConversionPlan) -> List[str]:
    groups = group_reasons(plan.results)
    lines: List[str] = []
    if groups:
        lines.append(f"by reason ({len(groups)}), over {len(plan.results)} domains:")
        for g in groups[:GROUP_LIMIT]:
            keys = ", ".join(_short(k, 40) for k in g["keys"][:EXAMPLES])
            if len(g["keys"]) > EXAMPLES:
                keys += f" (+{len(g['keys']) - EXAMPLES})"
            lines.extend(_counted(g["count"], f"{_KIND_TITLE[g['kind']]}: {keys}: "
                                  f"{g['reason']}"))
            lines.append(f"{'':9}in {_examples(g['domains'])}")
        if len(groups) > GROUP_LIMIT:
            lines.append(f"  ... {len(groups) - GROUP_LIMIT} more reasons "
                         "(--report-json lists them all)")
    noted = [r.name for r in plan.results if r.disk_notes]
    if noted:
        lines.extend(_wrapped(
            f"disk notes for {len(noted)} domain(s) ({_examples(noted)}): in "
            "--report-json; what the backup of a remus disk needs is also a "
            "comment in its .cfg", indent=0, hang=2))
    pvh: "OrderedDict[str, List[str]]" = OrderedDict()
    for res in plan.results:
        for note in res.pvh_notes:
            pvh.setdefault(note, []).append(res.name)
    for note, names in list(pvh.items())[:GROUP_LIMIT]:
        lines.extend(_counted(len(names), f"PVH: {note}"))
        lines.append(f"{'':9}in {_examples(names)}")
    missing = [(r.name, k, p) for r in plan.results for k, p in (r.missing or [])]
    if missing:
        lines.append(f"not on this host ({len(missing)} path(s)):")
        for name, key, path in missing[:MISSING_LIMIT]:
            lines.extend(_wrapped(f"{_short(name, 40)}: {_short(key)} {path}"))
        if len(missing) > MISSING_LIMIT:
            lines.append(f"  ... {len(missing) - MISSING_LIMIT} more "
                         "(--report-json lists them all)")
    return lines


def _count(results: Sequence[DomainResult], get) -> Tuple[int, int]:
    """(domains with any, total) of ``get(result)`` (a list)."""
    sizes = [len(get(r) or []) for r in results]
    return sum(1 for n in sizes if n), sum(sizes)


def summary_counts(plan: ConversionPlan) -> Dict[str, Any]:
    """The numbers of the summary table (and of the JSON ``summary``)."""
    results = plan.results
    files = {status: sum(1 for f in plan.files if f.status == status)
             for status in ("new", "changed", "unchanged")}
    counts: Dict[str, Any] = {"domains": len(results), "files": files,
                              "skipped": len(plan.skipped)}
    for kind in KINDS:
        counts[kind] = _count(results, lambda r, k=kind: _items(r, k))
    counts["omitted"] = _count(results, lambda r: r.omitted)
    counts["disk_notes"] = _count(results, lambda r: r.disk_notes)
    checked = [r for r in results if r.missing is not None]
    counts["missing"] = _count(checked, lambda r: r.missing) if checked else None
    return counts


def _table(plan: ConversionPlan, dry_run: bool) -> List[str]:
    c = summary_counts(plan)
    f = c["files"]
    verb = "to write" if dry_run else "written"
    rows = [("", "domains", "items"),
            ("converted", str(c["domains"]), ""),
            (f"files {verb} (new / changed)", "", f"{f['new']} / {f['changed']}"),
            ("files unchanged", "", str(f["unchanged"]))]
    labels = (("flagged", "paths to check"), ("rewritten", "rewritten for this host"),
              ("untranslated", "untranslated"), ("disk_notes", "disk notes"),
              ("omitted", "left out: xl's default, runtime"))
    for key, label in labels:
        doms, total = c[key]
        if total:
            rows.append((label, str(doms), str(total)))
    if c["missing"] is not None:       # checked: shown even when none is missing
        rows.append(("not on this host", str(c["missing"][0]), str(c["missing"][1])))
    if c["skipped"]:
        rows.append(("inputs skipped", "", str(c["skipped"])))
    width = max(len(r[0]) for r in rows)
    return [f"  {a.ljust(width)}  {b:>7}  {d:>7}".rstrip() for a, b, d in rows]


def summary_line(plan: ConversionPlan, *, dry_run: bool = False) -> str:
    changed = sum(1 for f in plan.files if f.status != "unchanged")
    with_gaps = sum(1 for r in plan.results if r.untranslated)
    verb = "would write" if dry_run else "wrote"
    text = (f"summary: {len(plan.results)} domain(s) converted, {verb} "
            f"{changed} file(s) in {plan.outdir}, {plan.untranslated_count} "
            f"untranslated key(s) in {with_gaps} domain(s)")
    missing = summary_counts(plan)["missing"]
    if missing is not None:
        text += f", {missing[1]} path(s) not on this host"
    return text + (" (dry run: nothing written)" if dry_run else "")


def format_report(plan: ConversionPlan, *, dry_run: bool = False,
                  force: bool = False, quiet: bool = False,
                  per_domain: Optional[bool] = None) -> str:
    """The human summary.  Up to :data:`DETAIL_LIMIT` domains (or with
    ``per_domain``): a section per domain with its files, notes and every
    reported key; more: the reasons grouped, each once with its count and
    example domains.  Then, for several domains, a summary table; last the
    summary line (``quiet``: the summary line alone)."""
    if quiet:
        return summary_line(plan, dry_run=dry_run) + "\n"
    lines: List[str] = []
    by_domain: Dict[str, List[PlannedFile]] = {}
    for item in plan.files:
        by_domain.setdefault(item.domain, []).append(item)
    if per_domain is None:
        per_domain = len(plan.results) <= DETAIL_LIMIT
    if per_domain:
        for res in plan.results:
            lines.extend(_domain_section(res, by_domain.get(res.name, []),
                                         dry_run=dry_run, force=force))
            lines.append("")
    else:
        verb = "would write" if dry_run else "wrote"
        lines.append(f"{verb} the files of {len(plan.results)} domains in "
                     f"{plan.outdir} (per domain: --report-json)")
        lines.append("")
        grouped = _grouped(plan)
        if grouped:
            lines.extend(grouped)
            lines.append("")
    if per_domain or len(plan.skipped) <= EXAMPLES:
        for what, why in plan.skipped:
            lines.append(f"skipped {what}: {why}")
    else:
        skipped: "OrderedDict[str, List[str]]" = OrderedDict()
        for what, why in plan.skipped:
            skipped.setdefault(why, []).append(what)
        for why, whats in list(skipped.items())[:GROUP_LIMIT]:
            lines.extend(_counted(len(whats), f"skipped: {why}"))
            lines.append(f"{'':9}{_examples(whats)}")
    if len(plan.results) > 1 or plan.skipped:
        if lines and lines[-1]:
            lines.append("")
        lines.extend(_table(plan, dry_run))
    lines.append(summary_line(plan, dry_run=dry_run))
    return "\n".join(lines) + "\n"


def report_json(plan: ConversionPlan, *, dry_run: bool = False) -> Dict[str, Any]:
    """The machine-readable report (``--report-json``, schema
    :data:`JSON_SCHEMA`, described in the man page)."""
    by_domain: Dict[str, List[PlannedFile]] = {}
    for item in plan.files:
        by_domain.setdefault(item.domain, []).append(item)
    domains = []
    for res in plan.results:
        domains.append({
            "name": res.name, "source": res.source,
            "files": [{"path": f.path, "status": f.status} for f in by_domain.get(res.name, [])],
            "items": [{"kind": i.kind, "key": i.key, "reason": i.reason, "value": i.value,
                       "new": i.new} for i in res.items],
            "omitted": [{"key": k, "why": w} for k, w in res.omitted],
            "disk_notes": list(res.disk_notes),
            "pvh_notes": list(res.pvh_notes),
            "paths": [{"kind": k, "key": key, "path": p} for k, key, p in res.paths],
            "missing": (None if res.missing is None else
                        [{"key": k, "path": p} for k, p in res.missing]),
        })
    c = summary_counts(plan)
    summary = {"domains": c["domains"], "files": c["files"], "skipped": c["skipped"],
               "untranslated_keys": plan.untranslated_count}
    for key in KINDS + ("omitted", "disk_notes", "missing"):
        value = c[key]
        summary[key] = None if value is None else {"domains": value[0], "count": value[1]}
    return {"schema": JSON_SCHEMA, "dry_run": dry_run, "outdir": plan.outdir,
            "inputs": list(plan.inputs), "domains": domains,
            "skipped": [{"what": w, "why": y} for w, y in plan.skipped],
            "reasons": group_reasons(plan.results), "summary": summary}


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
