"""Migrate xend-era domain configurations to xl: discover the inputs, read
them into the model, translate, plan the output files, write them, report.

This is the library behind ``xen-remus-compat convert`` (design.md,
"Translation"; xl-side.md §1.8 for remus disks, §4 for libxl JSON, §6 for the
concept map).  The command line only parses options and prints.

The conversion is **all-or-nothing**: every input is read, parsed and
translated, and every output name checked, before the first byte is written.
The files are then written as one batch (:func:`atomic.write_all`): all
temporary files first, then the renames, so an error anywhere (bad input,
an existing file without ``force``, ENOSPC) leaves OUTDIR as it was.

Accepted inputs (the format is recognised from the first significant
character, not the file name):

* an sxpr file: a runtime ``(domain ...)`` (``xm list -l`` of one domain),
  a stored ``config.sxp``, ``(vm ...)``, or several domains one after the
  other (an ``xm list -l`` dump); Domain-0 in a dump is skipped;
* libxl JSON (``xl list -l`` array, one wrapper or a bare config);
* libvirt domain XML;
* a directory: a xend domains tree (``/var/lib/xend/domains``), i.e. every
  ``<uuid>/config.sxp`` below it, or a single ``<uuid>`` directory.
"""
from __future__ import annotations

import contextlib
import difflib
import errno
import importlib
import json
import logging
import os
import re
import textwrap
import unicodedata
from dataclasses import dataclass, field
from typing import (Callable, Dict, Iterable, Iterator, List, Optional,
                    Sequence, Tuple)

from .. import atomic, errors
from ..config.model import Disk, Domain

log = logging.getLogger("xen_remus_compat")

#: Largest input file read (a domain config is kilobytes; an ``xm list -l``
#: dump of hundreds of domains a few megabytes).  Bounds memory on garbage.
MAX_INPUT_BYTES = 64 * 1024 * 1024

#: ``--remus-disks`` choices (xl-side.md §1.8): keep the replication through
#: a hotplug script, or the plain underlying image.
REMUS_DISK_MODES = ("script", "plain")

#: Output file suffixes (the .json only with ``with_json``).
CFG_SUFFIX = ".cfg"
JSON_SUFFIX = ".json"

#: Names of the stored config in a xend domains tree.
XEND_CONFIG_NAME = "config.sxp"

#: First significant character -> input format.
_SNIFF = {"(": "sxpr", "#": "sxpr", "{": "json", "[": "json", "<": "xml"}

#: Domain names never converted from a dump: the control domain.
_CONTROL_DOMAIN_NAMES = frozenset({"Domain-0"})

# Longest key, and longest item, shown in the report before it is abbreviated.
_REPORT_VALUE_MAX = 72
_REPORT_ITEM_MAX = 600


# --------------------------------------------------------------- data types

@dataclass
class LoadedDomain:
    """One domain read from one input."""

    domain: Domain
    source: str
    index: int = 0          # position among the domains of its input


@dataclass
class DomainResult:
    """One domain translated: the text of each output and what was lost."""

    domain: Domain
    source: str
    cfg_text: str
    json_text: Optional[str] = None
    untranslated: List[Tuple[str, str]] = field(default_factory=list)
    disk_notes: List[str] = field(default_factory=list)

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
    """Everything :func:`write` needs, and everything the report shows."""

    outdir: str
    inputs: List[str]
    results: List[DomainResult]
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (what, why)
    files: List[PlannedFile] = field(default_factory=list)
    written: List[str] = field(default_factory=list)

    @property
    def untranslated_count(self) -> int:
        return sum(len(r.untranslated) for r in self.results)


# ------------------------------------------------------------ reading input

def _position(data: bytes, offset: int) -> Tuple[int, int]:
    """1-based line and character column of byte ``offset``."""
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[start:offset].decode("utf-8", errors="replace")) + 1
    return line, col


def decode_input(data: bytes, source: str) -> str:
    """Strict UTF-8 decoding; NUL bytes and invalid sequences are errors
    naming their line and column (no format we read may contain them)."""
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if nul < 0 or exc.start < nul:
            line, col = _position(data, exc.start)
            raise errors.ConfigError(
                f"invalid UTF-8 (byte 0x{data[exc.start]:02x}: {exc.reason})",
                source=source, line=line, col=col) from None
    if nul >= 0:
        line, col = _position(data, nul)
        raise errors.ConfigError("NUL byte in input", source=source,
                                 line=line, col=col)
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def read_input(path: str, *, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of one input file; OS errors become input errors (errno kept
    in the message)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise _os_error(exc, path) from exc
    if len(data) > limit:
        raise errors.ConfigError(
            f"input larger than {limit // (1024 * 1024)} MiB; "
            "not a domain configuration", source=path)
    return data


def _os_error(exc: OSError, path: str) -> errors.InputError:
    name = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc)
    if name:
        reason = f"{reason} ({name})"
    return errors.InputError(reason, source=path)


def sniff_format(text: str, source: str) -> str:
    """``sxpr``, ``json`` or ``xml`` from the first significant character."""
    stripped = text.lstrip()
    if not stripped:
        raise errors.ConfigError("empty input: no domain configuration",
                                 source=source)
    fmt = _SNIFF.get(stripped[0])
    if fmt is None:
        skipped = text[:len(text) - len(stripped)]
        line = skipped.count("\n") + 1
        col = len(skipped) - (skipped.rfind("\n") + 1) + 1
        raise errors.ConfigError(
            f"unrecognised input format (starts with {stripped[0]!r}; expected "
            "'(' for an sxpr, '{' or '[' for libxl JSON, '<' for libvirt XML)",
            source=source, line=line, col=col)
    return fmt


def discover(paths: Sequence[str], *, listdir: Callable = os.listdir) -> List[str]:
    """Expand the command-line inputs into files.

    A directory holding ``config.sxp`` is one xend domain; any other
    directory is a xend domains tree, and every ``<child>/config.sxp`` is an
    input, in sorted order (children without one are logged and ignored).
    """
    found: List[str] = []
    for path in paths:
        if not os.path.isdir(path):
            found.append(path)
            continue
        own = os.path.join(path, XEND_CONFIG_NAME)
        if os.path.isfile(own):
            found.append(own)
            continue
        try:
            children = sorted(listdir(path))
        except OSError as exc:
            raise _os_error(exc, path) from exc
        members = []
        for child in children:
            sub = os.path.join(path, child)
            if not os.path.isdir(sub):
                continue
            cfg = os.path.join(sub, XEND_CONFIG_NAME)
            if os.path.isfile(cfg):
                members.append(cfg)
            else:
                log.info("%s: no %s, ignored", sub, XEND_CONFIG_NAME)
        if not members:
            raise errors.InputError(
                f"directory holds no <uuid>/{XEND_CONFIG_NAME} "
                "(expected a xend domains tree such as /var/lib/xend/domains)",
                source=path)
        found.extend(members)
    return found


#: Input format -> (config module, how to read every domain with it).
_READERS = {
    "sxpr": ("sxpr", lambda mod, text, data, source, lenient:
             mod.domains_from_text(text, source=source, lenient=lenient)),
    "json": ("libxl_json", lambda mod, text, data, source, lenient:
             mod.loads(text, source=source)),
    "xml": ("libvirt_xml", lambda mod, text, data, source, lenient:
            [mod.domain_from_xml(data, source=source)]),
}


def parse_domains(data: bytes, source: str, *, lenient: bool = False) -> List[Domain]:
    """Every domain in one input, whatever its format.  Every input error
    names ``source``, and a line and column wherever they can be found."""
    text = decode_input(data, source)
    fmt = sniff_format(text, source)
    module_name, read = _READERS[fmt]
    module = importlib.import_module(f".config.{module_name}", __package__)
    try:
        return list(read(module, text, data, source, lenient))
    except RecursionError:
        raise too_deep(text, fmt, source) from None
    except errors.InputError as exc:
        if exc.source is None:
            exc.source = source
        if exc.line is None:
            if fmt == "sxpr":
                locate_sxpr_error(exc, text, lenient=lenient)
            elif fmt == "json":
                locate_json_error(exc, text)
        raise


#: Nesting depth reported as "too deep" when a reader ran out of stack
#: (real configurations nest less than ten levels).
DEEP_NESTING = 100

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]|\n|[^"\[\]{}\n]+', re.S)


def too_deep(text: str, fmt: str, source: str) -> errors.ConfigError:
    """The error for input nested beyond what a reader could follow, at the
    first bracket that is :data:`DEEP_NESTING` levels deep.  (Deep nesting is
    a property of the input, not a bug of ours: exit status 1.)"""
    opening, closing, token = (("(", ")", _TOKEN) if fmt == "sxpr"
                               else ("[{", "]}", _JSON_TOKEN))
    depth, line, line_start = 0, 1, 0
    where: Tuple[Optional[int], Optional[int]] = (None, None)
    if fmt in ("sxpr", "json"):
        for m in token.finditer(text):
            tok = m.group()
            if tok in opening:
                depth += 1
                if depth >= DEEP_NESTING:
                    where = (line, m.start() - line_start + 1)
                    break
            elif tok in closing:
                depth -= 1
            elif "\n" in tok and tok[0] != "#":
                line += tok.count("\n")
                line_start = m.start() + tok.rfind("\n") + 1
    return errors.ConfigError(
        f"input nested too deeply (more than {DEEP_NESTING - 1} levels)",
        source=source, line=where[0], col=where[1])


# ---- positions for errors found after parsing ---------------------------
#
# sxp.loads returns plain lists, so an error that config/sxpr.py finds in a
# value (negative memory, a vbd without dev) names the key path but not the
# line.  The operator needs the line: find the element by re-running the
# domain reader on each top-level child alone (the child whose error is the
# same error is the culprit), then follow the key path in the message down
# that child.  Only the '(' positions are needed; they come from a scan that
# knows just enough of the grammar (legacy-api.md 11.2: strings, their
# backslash escapes, comments, and quotes being literal inside atoms) to
# tell a real '(' from one in a string or comment.

_TOKEN = re.compile(r"""[ \t\n\v\f\r]+|\#[^\n]*|[()]|"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^ \t\n\v\f\r()\#]+""", re.S)
_LOCATE_DEPTH = 6


def _list_positions(text: str, max_depth: int = _LOCATE_DEPTH) -> Dict[tuple, Tuple[int, int]]:
    """(line, col) of each '(' up to ``max_depth``, keyed by its path of
    list-child indexes (the n-th list inside the m-th top-level list ...)."""
    positions: Dict[tuple, Tuple[int, int]] = {}
    path: List[int] = []
    counts: List[int] = [0]
    line, line_start = 1, 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok == "(":
            key = tuple(path) + (counts[-1],)
            if len(key) <= max_depth:
                positions[key] = (line, m.start() - line_start + 1)
            path.append(counts[-1])
            counts[-1] += 1
            counts.append(0)
        elif tok == ")":
            if path:
                path.pop()
                counts.pop()
        elif "\n" in tok and tok[0] != "#":
            line += tok.count("\n")
            line_start = m.start() + tok.rfind("\n") + 1
    return positions


def _list_index(parent: Sequence, index: int) -> int:
    """How many lists precede ``parent[index]`` in ``parent``."""
    return sum(1 for x in parent[:index] if isinstance(x, (list, tuple)))


def locate_sxpr_error(exc: errors.CompatError, text: str, *,
                      lenient: bool = False) -> None:
    """Give ``exc`` (raised by config/sxpr.py for ``text``) the line and
    column of the element it is about, when that can be found."""
    from .. import sxp
    from ..config.formats import sxpr
    try:
        values = sxp.loads(text, source=exc.source or "<sxpr>", lenient=lenient)
    except errors.CompatError:
        return
    wanted = (type(exc), exc.message)

    def same(candidate) -> bool:
        try:
            sxpr.domain_from_sxpr(candidate, source=exc.source)
        except errors.CompatError as other:
            return (type(other), other.message) == wanted
        return False

    positions = _list_positions(text)
    for vi, value in enumerate(values):
        if not isinstance(value, (list, tuple)):
            continue
        top = (_list_index(values, vi),)
        if not (value and value[0] in sxpr.ROOT_NAMES):
            where = positions.get(top)       # "top-level value is (foo ...)"
            if where and f"top-level value {vi + 1} " in exc.message:
                exc.line, exc.col = where
                return
            continue
        if not same(value):
            continue
        found = top
        for ci in range(1, len(value)):
            child = value[ci]
            if isinstance(child, (list, tuple)) and same([value[0], child]):
                found = top + (_list_index(value, ci),)
                found = _follow_path(exc.message, value[0], child, found, positions)
                break
        where = positions.get(found)
        if where:
            exc.line, exc.col = where
        return


def _follow_path(message: str, root: str, child: Sequence, key: tuple,
                 positions: Dict[tuple, Tuple[int, int]]) -> tuple:
    """Descend ``child`` along the ``root/a/b/c:`` path that starts the
    message, as far as the elements exist."""
    head = message.split(": ", 1)[0]
    parts = head.split("/")
    if len(parts) < 3 or parts[0] != root or not child or parts[1] != child[0]:
        return key
    node = child
    for name in parts[2:]:
        for i in range(1, len(node)):
            sub = node[i]
            if isinstance(sub, (list, tuple)) and sub and sub[0] == name:
                candidate = key + (_list_index(node, i),)
                if candidate not in positions:
                    return key
                key, node = candidate, sub
                break
        else:
            return key
    return key


# JSON: json.loads keeps no positions either.  config/libxl_json.py names
# the failing field as a path relative to one libxl_domain_config
# ("b_info.max_memkb", "disks[0].vdev"); find which domain of an array it
# is about (the one whose config raises the same error alone), resolve the
# path against the data (keys may contain dots: "type.hvm"), and find that
# value's first character with a token scan (JSON strings hold no raw
# newlines, so only whitespace moves the line).

_JSON_SCAN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[ \t\r\n]+|[^ \t\r\n{}\[\]:,"]+')
_JSON_PATH_PART = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def _json_value_position(text: str, target: Sequence) -> Optional[Tuple[int, int]]:
    """(line, col) where the value at ``target`` (keys and indexes) starts."""
    target = list(target)
    stack: List[list] = []     # ["obj", key, awaiting_key] or ["arr", index]
    line, line_start = 1, 0
    for m in _JSON_SCAN.finditer(text):
        tok = m.group()
        c = tok[0]
        if c in " \t\r\n":
            if "\n" in tok:
                line += tok.count("\n")
                line_start = m.start() + tok.rfind("\n") + 1
            continue
        if c == ",":
            if stack:
                if stack[-1][0] == "arr":
                    stack[-1][1] += 1
                else:
                    stack[-1][2] = True
            continue
        if c == ":":
            if stack:
                stack[-1][2] = False
            continue
        if c in "}]":
            if stack:
                stack.pop()
            continue
        if stack and stack[-1][0] == "obj" and stack[-1][2]:
            try:
                stack[-1][1] = json.loads(tok)
            except ValueError:
                return None
            continue
        if [f[1] for f in stack] == target:
            return line, m.start() - line_start + 1
        if c == "{":
            stack.append(["obj", None, True])
        elif c == "[":
            stack.append(["arr", 0])
    return None


def _resolve_json_path(data, text_path: str) -> List:
    """Keys/indexes of ``text_path`` that exist in ``data`` (a prefix when
    the last ones are missing)."""
    parts: List = []
    for m in _JSON_PATH_PART.finditer(text_path):
        parts.append(int(m.group(1)) if m.group(1) is not None else m.group(2))
    out: List = []
    node, i = data, 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, int):
            if not (isinstance(node, list) and part < len(node)):
                break
            node, i = node[part], i + 1
            out.append(part)
            continue
        if not isinstance(node, dict):
            break
        for j in range(len(parts), i, -1):   # longest key first: "type.hvm"
            if not all(isinstance(x, str) for x in parts[i:j]):
                continue
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                out.append(key)
                break
        else:
            break
    return out


def locate_json_error(exc: errors.CompatError, text: str) -> None:
    """Give ``exc`` (raised by config/libxl_json.py for ``text``) the line
    and column of the value it is about, when that can be found."""
    from ..config.formats import libxl_json
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return
    head = exc.message.split(": ", 1)[0]
    prefix: List = []
    config = data
    if isinstance(data, list):
        m = re.match(r"\[(\d+)\]", head)
        index = int(m.group(1)) if m else None
        if index is None:
            for i, item in enumerate(data):
                try:
                    libxl_json.loads(json.dumps([item]), source=exc.source or "")
                except errors.CompatError as other:
                    if other.message == exc.message:
                        index = i
                        break
        if index is None or index >= len(data):
            return
        prefix, config = [index], data[index]
        if m:
            head = head[m.end():].lstrip(".")
    if isinstance(config, dict) and "config" in config and not head.startswith(("domid", "config")):
        prefix, config = prefix + ["config"], config["config"]
    where = _json_value_position(text, prefix + _resolve_json_path(config, head))
    if where:
        exc.line, exc.col = where


def load_domains(paths: Sequence[str], *, lenient: bool = False,
                 reader: Callable[[str], bytes] = read_input
                 ) -> Tuple[List[LoadedDomain], List[Tuple[str, str]]]:
    """Read every input; returns the domains and the skipped ones (why)."""
    loaded: List[LoadedDomain] = []
    skipped: List[Tuple[str, str]] = []
    for path in discover(paths):
        domains = parse_domains(reader(path), path, lenient=lenient)
        if not domains:
            skipped.append((path, "no domain in this input"))
        for index, dom in enumerate(domains):
            if dom.domid == 0 or dom.name in _CONTROL_DOMAIN_NAMES:
                skipped.append((f"{dom.name or 'domain 0'} ({path})",
                                "the control domain (dom0) is not converted"))
                continue
            loaded.append(LoadedDomain(dom, path, index))
    return loaded, skipped


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


@contextlib.contextmanager
def _attributed(item: LoadedDomain) -> Iterator[None]:
    """Model-level errors do not know the file: name it, and where the
    domain starts in it."""
    try:
        yield
    except errors.CompatError as exc:
        if exc.source is None:
            exc.source = item.source
            if exc.line is None:
                exc.line, exc.col = domain_position(item)
        raise


def translate(item: LoadedDomain, *, remus: str = "script",
              with_json: bool = False) -> DomainResult:
    """One domain -> xl.cfg text (+ libxl JSON), and the report items."""
    from ..config.formats import xlcfg
    if remus not in REMUS_DISK_MODES:
        raise ValueError(f"remus must be one of {REMUS_DISK_MODES}")
    dom = item.domain
    with _attributed(item):
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
                        disk_notes=notes)


def domain_position(item: LoadedDomain) -> Tuple[Optional[int], Optional[int]]:
    """Line and column where a domain starts in its input (its ``(domain``,
    or its JSON object); (None, None) for XML or an unreadable file."""
    try:
        text = decode_input(read_input(item.source), item.source)
    except errors.CompatError:
        return None, None
    fmt = sniff_format(text, item.source)
    if fmt == "json":
        try:
            is_array = isinstance(json.loads(text), list)
        except (ValueError, RecursionError):
            return None, None
        return _json_value_position(text, [item.index] if is_array else []) or (None, None)
    if fmt != "sxpr":
        return None, None
    return _list_positions(text, max_depth=1).get((item.index,), (None, None))


# ------------------------------------------------------------------ output

def _read_existing(path: str) -> Tuple[Optional[str], bool]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        return None, False
    except IsADirectoryError:
        return None, True
    except OSError as exc:
        raise _os_error(exc, path) from exc
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


def ensure_outdir(outdir: str) -> None:
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as exc:
        raise _os_error(exc, outdir) from exc


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
        err = _os_error(exc, exc.filename or plan.outdir)
        if committed:
            err.message += f" (already written: {', '.join(committed)})"
        raise err from exc
    plan.written = done
    return done


def prepare(inputs: Sequence[str], outdir: str, *, remus: str = "script",
            lenient: bool = False, with_json: bool = False,
            reader: Callable[[str], bytes] = read_input) -> ConversionPlan:
    """Read, validate and translate everything; plan the outputs.  Nothing
    is written; any error in any input raises before a file is touched."""
    if remus not in REMUS_DISK_MODES:
        raise errors.InputError(
            f"--remus-disks must be one of {', '.join(REMUS_DISK_MODES)}")
    loaded, skipped = load_domains(inputs, lenient=lenient, reader=reader)
    for item in loaded:
        check_domain_name(item.domain.name, item.source)
    check_unique(loaded)
    results = [translate(item, remus=remus, with_json=with_json)
               for item in loaded]
    plan = ConversionPlan(outdir=outdir, inputs=list(inputs),
                          results=results, skipped=skipped)
    plan.files = plan_outputs(results, outdir)
    return plan


def convert(inputs: Sequence[str], outdir: str, *, remus: str = "script",
            lenient: bool = False, with_json: bool = False,
            force: bool = False, dry_run: bool = False) -> ConversionPlan:
    """The whole pipeline: :func:`prepare`, check, and (unless ``dry_run``)
    :func:`write`."""
    plan = prepare(inputs, outdir, remus=remus, lenient=lenient,
                   with_json=with_json)
    if not dry_run:
        check_overwrites(plan.files, force)
        write(plan, force=force)
    return plan


# ------------------------------------------------------------------ report

def _short(text: str, limit: int = _REPORT_VALUE_MAX) -> str:
    """One line, abbreviated past ``limit`` (values can be megabytes)."""
    text = " ".join(str(text).split())
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


# -------------------------------------------------------------------- show

#: ``show --format`` choices.
SHOW_FORMATS = ("sxpr", "json", "xl")

# Indentation stops growing past this depth, so printing a pathologically
# deep (but parseable) input stays linear in its size.
_MAX_INDENT_DEPTH = 32


# Atoms xend's printer writes bare (legacy-api.md 11.3 atomp: ASCII letters,
# digits and . - _ : / ~); everything else goes through sxp.to_string.
_BARE_ATOM = re.compile(r"[A-Za-z0-9._:/~-]+")


def _atom_text(value) -> str:
    if isinstance(value, str) and _BARE_ATOM.fullmatch(value):
        return value
    from .. import sxp
    return sxp.to_string(value)


def _flat_sxpr(node, limit: int) -> Optional[str]:
    """``node`` on one line, or None as soon as it exceeds ``limit``
    characters (iterative: nesting depth is the input's, not ours)."""
    out: List[str] = []
    size = 0
    stack = [iter([node])]
    first = [True]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            first.pop()
            if stack:
                out.append(")")
                size += 1
                if size > limit:
                    return None
            continue
        sep = "" if first[-1] else " "
        first[-1] = False
        if isinstance(item, (list, tuple)):
            piece = sep + "("
            stack.append(iter(item))
            first.append(True)
        else:
            piece = sep + _atom_text(item)
        out.append(piece)
        size += len(piece)
        if size > limit:
            return None
    return "".join(out)


def pretty_sxpr(node, *, indent: int = 4, width: int = 78) -> str:
    """An indented, readable sxpr in the layout of ``xm list -l``: an element
    that fits on the rest of the line stays on it; otherwise its name opens
    the line, its children follow, indented, one list per line and runs of
    atoms filled up to the width, and ``)`` closes on a line of its own.
    Atoms are quoted as xend's printer did (legacy-api.md §11.3), so the
    output reads back to the same value.  Iterative, and linear in the size
    of ``node`` (a flat attempt stops at the width)."""
    lines: List[str] = []
    # frames: (iterator over the remaining children, depth of the children)
    stack: List[tuple] = []
    fill: List[str] = []            # atoms waiting to be packed on a line
    fill_len = 0

    def pad(depth: int) -> str:
        return " " * (indent * min(depth, _MAX_INDENT_DEPTH))

    def flush(depth: int) -> None:
        nonlocal fill_len
        if fill:
            lines.append(pad(depth) + " ".join(fill))
            fill.clear()
            fill_len = 0

    def emit(value, depth: int) -> None:
        """Place ``value`` at ``depth``: flat, or open it (push a frame)."""
        nonlocal fill_len
        prefix = pad(depth)
        if not isinstance(value, (list, tuple)):
            text = _atom_text(value)
            if fill and len(prefix) + fill_len + 1 + len(text) > width:
                flush(depth)
            fill.append(text)
            fill_len += len(text) + (1 if fill_len else 0)
            return
        flush(depth)
        flat = _flat_sxpr(value, max(width - len(prefix), 20))
        if flat is None and len(value) == 2 and not any(
                isinstance(x, (list, tuple)) for x in value):
            # (key value) stays on one line, however long the value
            flat = f"({_atom_text(value[0])} {_atom_text(value[1])})"
        if flat is not None:
            lines.append(prefix + flat)
            return
        head, start = "(", 0
        if value and not isinstance(value[0], (list, tuple)):
            head, start = "(" + _atom_text(value[0]), 1
        lines.append(prefix + head)
        stack.append((iter(value[start:]) if start else iter(value), depth + 1))

    bare = _BARE_ATOM.fullmatch
    emit(node, 0)
    while stack:
        children, depth = stack[-1]
        room = width - len(pad(depth))
        for child in children:
            if type(child) is str:
                # the hot path of long atom lists, inlined
                text = child if bare(child) else _atom_text(child)
                if fill and fill_len + 1 + len(text) > room:
                    flush(depth)
                fill.append(text)
                fill_len += len(text) + (1 if fill_len else 0)
                continue
            before = len(stack)
            emit(child, depth)
            if len(stack) != before:
                break               # descend into the child just opened
        else:
            stack.pop()
            flush(depth)
            lines.append(pad(depth - 1) + ")")
    flush(0)
    return "\n".join(lines) + "\n"


def _domain_sxpr(dom: Domain):
    from ..config.formats import sxpr
    form = "runtime" if dom.domid is not None else "config"
    return sxpr.domain_to_sxpr(dom, form=form)


def render(paths: Sequence[str], fmt: str = "sxpr", *, lenient: bool = False,
           remus: str = "script",
           reader: Callable[[str], bytes] = read_input) -> str:
    """What ``show`` prints.  An sxpr shown as sxpr is re-indented as parsed
    (nothing goes through the model, so nothing is lost, Domain-0 included);
    every other combination goes through the model, and skips Domain-0 as
    ``convert`` does (logged).  Several domains in JSON become an
    ``xl list -l`` style array of ``{"domid", "config"}`` wrappers."""
    if fmt not in SHOW_FORMATS:
        raise errors.InputError(f"--format must be one of {', '.join(SHOW_FORMATS)}")
    chunks: List[str] = []
    domains: List[LoadedDomain] = []
    for path in discover(paths):
        data = reader(path)
        if fmt == "sxpr":
            text = decode_input(data, path)
            if sniff_format(text, path) == "sxpr":
                from .. import sxp
                try:
                    values = sxp.loads(text, source=path, lenient=lenient)
                except RecursionError:
                    raise too_deep(text, "sxpr", path) from None
                chunks.extend(pretty_sxpr(v) for v in values)
                continue
        loaded, skipped = load_domains([path], lenient=lenient,
                                       reader=lambda _p, d=data: d)
        for what, why in skipped:
            log.warning("skipped %s: %s", what, why)
        if fmt == "sxpr":
            for item in loaded:
                with _attributed(item):
                    chunks.append(pretty_sxpr(_domain_sxpr(item.domain)))
        else:
            domains.extend(loaded)
    if fmt == "json":
        from ..config.formats import libxl_json
        texts = []
        for item in domains:
            with _attributed(item):
                texts.append(libxl_json.dumps(item.domain, wrapper=len(domains) > 1))
        if len(texts) == 1:
            chunks.append(texts[0].rstrip("\n") + "\n")
        elif texts:
            array = [json.loads(t) for t in texts]
            chunks.append(json.dumps(array, indent=4) + "\n")
    elif fmt == "xl":
        from ..config.formats import xlcfg
        for item in domains:
            header = ""
            if len(domains) > 1:
                header = f"# ---- domain {item.domain.name} (from {item.source}) ----\n"
            with _attributed(item):
                chunks.append(header + xlcfg.to_xlcfg(item.domain, remus=remus).text)
    return "".join(chunks)
