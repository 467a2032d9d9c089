"""Translate the domains read and plan the output files: everything
``convert`` decides before it writes a byte.

The conversion is all-or-nothing: every input is read, parsed and
translated, and every output name checked, here, so that :mod:`.output`
only has to put a finished plan on disk.
"""
# References: design.md "Translation"; xl-side.md §1.8 (remus disks), §4
# (libxl JSON), §6 (the concept map).
from __future__ import annotations

import os
import stat
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .. import errors
from ..config.model import Disk, Domain
from .inputs import (MAX_INPUT_BYTES, LoadedDomain, attributed, load_domains,
                     os_error, read_input)

#: ``--remus-disks`` choices (xl-side.md §1.8): keep the replication through
#: a hotplug script, or the plain underlying image.
REMUS_DISK_MODES = ("script", "plain")

#: Output file suffixes (the .json only with ``with_json``).
CFG_SUFFIX = ".cfg"
JSON_SUFFIX = ".json"


# --------------------------------------------------------------- data types

@dataclass
class DomainResult:
    """One domain translated: the text of each output and what was lost."""

    domain: Domain
    source: str
    cfg_text: str
    json_text: Optional[str] = None
    untranslated: List[Tuple[str, str]] = field(default_factory=list)
    disk_notes: List[str] = field(default_factory=list)
    #: what ``--to-pvh`` changed, and what the guest needs for it
    pvh_notes: List[str] = field(default_factory=list)
    #: everything the report says (``xlcfg.Item``: untranslated, rewritten,
    #: flagged), and what was left out because it changes nothing
    items: list = field(default_factory=list)
    omitted: List[Tuple[str, str]] = field(default_factory=list)
    #: (kind, key, path) host paths written into the .cfg
    paths: List[Tuple[str, str, str]] = field(default_factory=list)
    #: (key, path) of those not found on this host (``--check-host``);
    #: None when the host was not checked
    missing: Optional[List[Tuple[str, str]]] = None

    @property
    def name(self) -> str:
        return self.domain.name


@dataclass
class PlannedFile:
    """One output file: its new content and what is there now."""

    path: str
    content: str
    domain: str
    old: Optional[str] = None       # current content; None when absent
    old_unreadable: bool = False    # exists but is not a readable text file

    @property
    def exists(self) -> bool:
        return self.old is not None or self.old_unreadable

    @property
    def status(self) -> str:
        """``new``, ``changed`` or ``unchanged``."""
        if not self.exists:
            return "new"
        return "unchanged" if self.old == self.content else "changed"


@dataclass
class ConversionPlan:
    """Everything :func:`.output.write` needs, and everything the report shows."""

    outdir: str
    inputs: List[str]
    results: List[DomainResult]
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (what, why)
    files: List[PlannedFile] = field(default_factory=list)
    written: List[str] = field(default_factory=list)

    @property
    def untranslated_count(self) -> int:
        return sum(len(r.untranslated) for r in self.results)


# -------------------------------------------------------------- validation

def check_domain_name(name: str, source: str) -> None:
    """A domain name must be usable as ``OUTDIR/<name>.cfg`` and nothing else:
    no path separator, no ``.``/``..``, no leading dot (hidden, and our own
    temporary files start with one), no NUL or other control character."""
    problem = None
    if not name:
        problem = "domain has no name"
    elif "/" in name:
        problem = "contains '/'"
    elif name in (".", ".."):
        problem = "is a relative directory name"
    elif name.startswith("."):
        problem = "starts with '.'"
    elif "\0" in name:
        problem = "contains a NUL byte"
    elif any(unicodedata.category(c) == "Cc" for c in name):
        problem = "contains a control character"
    elif len(name.encode("utf-8")) + len(JSON_SUFFIX) > 255:
        problem = "is too long for a file name"
    if problem:
        raise errors.ConfigError(
            f"domain name {name!r} cannot be used as an output file name: "
            f"{problem}", source=source)


def check_unique(loaded: Iterable[LoadedDomain]) -> None:
    """Two inputs defining the same domain name would write the same file."""
    seen: Dict[str, str] = {}
    for item in loaded:
        first = seen.get(item.domain.name)
        if first is not None:
            raise errors.ConfigError(
                f"domain {item.domain.name!r} is also defined in {first}",
                source=item.source)
        seen[item.domain.name] = item.source


# ------------------------------------------------------------- translation

def legacy_dev(disk: Disk) -> str:
    """The xend ``dev`` of a disk (vdev plus ``:cdrom``)."""
    return f"{disk.vdev}:cdrom" if disk.is_cdrom else disk.vdev


def legacy_mode(disk: Disk) -> str:
    if disk.mode:
        return disk.mode
    return "w" if disk.readwrite else "r"


def disk_notes(dom: Domain, remus: str) -> List[str]:
    """The remus-disk diagnostics of a domain (xl-side.md §1.8), one line
    each, prefixed with the disk's vdev."""
    from ..config.specs import diskspec
    notes: List[str] = []
    for disk in dom.disks:
        if not disk.uname:
            continue
        try:
            tr = diskspec.translate(disk.uname, legacy_dev(disk),
                                    legacy_mode(disk), remus=remus)
        except errors.UntranslatableError:
            continue        # xlcfg lists it among the untranslated keys
        except errors.InputError as exc:
            notes.append(f"{disk.vdev}: {exc.message}")
            continue
        notes.extend(f"{disk.vdev}: {d}" for d in tr.diagnostics)
    return notes


def translate(item: LoadedDomain, *, remus: str = "script",
              with_json: bool = False, to_pvh: bool = False) -> DomainResult:
    """One domain -> xl.cfg text (+ libxl JSON), and the report items;
    ``to_pvh`` converts it to a PVH guest first (:mod:`.pvh`)."""
    from ..config.formats import xlcfg
    if remus not in REMUS_DISK_MODES:
        raise ValueError(f"remus must be one of {REMUS_DISK_MODES}")
    dom = item.domain
    pvh_notes: List[str] = []
    if to_pvh:
        from .pvh import to_pvh as convert_pvh
        converted = convert_pvh(dom, source=item.source)
        dom, pvh_notes = converted.domain, converted.notes
    with attributed(item):
        cfg = xlcfg.to_xlcfg(dom, remus=remus)
        json_text = None
        if with_json:
            from ..config.formats import libxl_json
            json_text = libxl_json.dumps(dom)
            if not json_text.endswith("\n"):
                json_text += "\n"
        notes = disk_notes(dom, remus)
    return DomainResult(domain=dom, source=item.source, cfg_text=cfg.text,
                        json_text=json_text,
                        untranslated=list(cfg.untranslated),
                        disk_notes=notes, pvh_notes=pvh_notes,
                        items=list(cfg.items), omitted=list(cfg.omitted),
                        paths=list(cfg.paths))


# ------------------------------------------------------------------ output

#: what a non-regular file at a target is called in the refusal
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _read_existing(path: str) -> Tuple[Optional[str], bool]:
    """What is at ``path`` now: (text or None, unreadable).  Anything but a
    regular file is refused before it is opened (a FIFO would block the
    read; a dangling symlink would look absent and be written through)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, False
    except OSError as exc:
        raise os_error(exc, path) from exc
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise errors.OutputExistsError(f"is {kind}; refusing to write there "
                                       "(remove it, or choose another OUTDIR)",
                                       source=path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        return None, False
    except OSError as exc:
        raise os_error(exc, path) from exc
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return None, True


def plan_outputs(results: Sequence[DomainResult], outdir: str) -> List[PlannedFile]:
    """The files to write, each with what is in its place now."""
    files: List[PlannedFile] = []
    for res in results:
        outputs = [(CFG_SUFFIX, res.cfg_text)]
        if res.json_text is not None:
            outputs.append((JSON_SUFFIX, res.json_text))
        for suffix, content in outputs:
            path = os.path.join(outdir, res.name + suffix)
            old, odd = _read_existing(path)
            files.append(PlannedFile(path=path, content=content,
                                     domain=res.name, old=old,
                                     old_unreadable=odd))
    return files


def check_overwrites(files: Sequence[PlannedFile], force: bool) -> None:
    """Refuse to replace a file whose content would change, unless forced.
    A file that already holds exactly the new content is left alone, so a
    second identical run succeeds."""
    blocked = [f for f in files if f.status == "changed"]
    if blocked and not force:
        more = f" (and {len(blocked) - 1} more)" if len(blocked) > 1 else ""
        raise errors.OutputExistsError(
            f"file exists and differs; use --force to overwrite{more}",
            source=blocked[0].path)
    for item in files:
        if item.old_unreadable and os.path.isdir(item.path):
            raise errors.OutputExistsError("is a directory", source=item.path)


#: ``progress(done, total, what)`` while a batch is translated
Progress = Callable[[int, int, str], None]


def prepare(inputs: Sequence[str], outdir: str, *, remus: str = "script",
            lenient: bool = False, with_json: bool = False, to_pvh: bool = False,
            reader: Callable[[str], bytes] = read_input,
            progress: Optional[Progress] = None) -> ConversionPlan:
    """Read, validate and translate everything; plan the outputs.  Nothing
    is written; any error in any input raises before a file is touched.
    ``progress`` is told about each domain translated."""
    if remus not in REMUS_DISK_MODES:
        raise errors.InputError(
            f"--remus-disks must be one of {', '.join(REMUS_DISK_MODES)}")
    loaded, skipped = load_domains(inputs, lenient=lenient, reader=reader)
    for item in loaded:
        check_domain_name(item.domain.name, item.source)
    check_unique(loaded)
    results = []
    for index, item in enumerate(loaded):
        if progress is not None:
            progress(index, len(loaded), item.domain.name)
        results.append(translate(item, remus=remus, with_json=with_json, to_pvh=to_pvh))
    if progress is not None:
        progress(len(loaded), len(loaded), "")
    plan = ConversionPlan(outdir=outdir, inputs=list(inputs),
                          results=results, skipped=skipped)
    plan.files = plan_outputs(results, outdir)
    return plan

