"""Find and read the inputs of ``convert``/``show`` into the model.

Every input error names its file, and a line and column wherever they can
be found (:mod:`.locate`).  Accepted inputs (the format is recognised from
the first significant character, not the file name):

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
import errno
import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterator, List, Sequence, Tuple

from .. import errors, sxp
from ..config.model import Domain
from . import locate

log = logging.getLogger("xen_remus_compat")

#: Largest input file read (a domain config is kilobytes; an ``xm list -l``
#: dump of hundreds of domains a few megabytes).  Bounds memory on garbage.
MAX_INPUT_BYTES = 64 * 1024 * 1024

#: Names of the stored config in a xend domains tree.
XEND_CONFIG_NAME = "config.sxp"

#: First significant character -> input format.
_SNIFF = {"(": "sxpr", "#": "sxpr", "{": "json", "[": "json", "<": "xml"}

#: Domain names never converted from a dump: the control domain.
_CONTROL_DOMAIN_NAMES = frozenset({"Domain-0"})


@dataclass
class LoadedDomain:
    """One domain read from one input."""

    domain: Domain
    source: str
    index: int = 0          # position among the domains of its input


def os_error(exc: OSError, path: str) -> errors.InputError:
    """An OS error on one of our files as an input error (exit status 1),
    errno name kept in the message."""
    name = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc)
    if name:
        reason = f"{reason} ({name})"
    return errors.InputError(reason, source=path)


def read_input(path: str, *, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of one input file; OS errors become input errors (errno kept
    in the message)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise os_error(exc, path) from exc
    if len(data) > limit:
        raise errors.ConfigError(
            f"input larger than {limit // (1024 * 1024)} MiB; "
            "not a domain configuration", source=path)
    return data


def decode_input(data: bytes, source: str) -> str:
    """Strict UTF-8 decoding; NUL bytes and invalid sequences are errors
    naming their line and column (no format we read may contain them)."""
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if nul < 0 or exc.start < nul:
            line, col, _ = sxp.position_at(data, exc.start)
            raise errors.ConfigError(
                f"invalid UTF-8 (byte 0x{data[exc.start]:02x}: {exc.reason})",
                source=source, line=line, col=col) from None
    if nul >= 0:
        line, col, _ = sxp.position_at(data, nul)
        raise errors.ConfigError("NUL byte in input", source=source,
                                 line=line, col=col)
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def sniff_format(text: str, source: str) -> str:
    """``sxpr``, ``json`` or ``xml`` from the first significant character."""
    stripped = text.lstrip()
    if not stripped:
        raise errors.ConfigError("empty input: no domain configuration",
                                 source=source)
    fmt = _SNIFF.get(stripped[0])
    if fmt is None:
        line, col, _ = sxp.position_at(text, len(text) - len(stripped))
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
            raise os_error(exc, path) from exc
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


# Input format -> how to read every domain of it (the config modules are
# imported only for the formats met).

def _read_sxpr(text: str, data: bytes, source: str, lenient: bool) -> List[Domain]:
    from ..config.formats import sxpr
    return sxpr.domains_from_text(text, source=source, lenient=lenient)


def _read_json(text: str, data: bytes, source: str, lenient: bool) -> List[Domain]:
    from ..config.formats import libxl_json
    return libxl_json.loads(text, source=source)


def _read_xml(text: str, data: bytes, source: str, lenient: bool) -> List[Domain]:
    from ..config.formats import libvirt_xml
    return [libvirt_xml.domain_from_xml(data, source=source)]


_READERS = {"sxpr": _read_sxpr, "json": _read_json, "xml": _read_xml}


def parse_domains(data: bytes, source: str, *, lenient: bool = False) -> List[Domain]:
    """Every domain in one input, whatever its format.  Every input error
    names ``source``, and a line and column wherever they can be found."""
    text = decode_input(data, source)
    fmt = sniff_format(text, source)
    try:
        return list(_READERS[fmt](text, data, source, lenient))
    except RecursionError:
        raise locate.too_deep(text, fmt, source, lenient=lenient) from None
    except errors.InputError as exc:
        if exc.source is None:
            exc.source = source
        if exc.line is None:
            if fmt == "sxpr":
                locate.locate_sxpr_error(exc, text, lenient=lenient)
            elif fmt == "json":
                locate.locate_json_error(exc, text)
        raise


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


def domain_position(item: LoadedDomain) -> locate.Where:
    """Line and column where a domain starts in its input (its ``(domain``,
    or its JSON object); (None, None) for XML or an unreadable file."""
    try:
        text = decode_input(read_input(item.source), item.source)
    except errors.CompatError:
        return None, None
    return locate.start_position(text, sniff_format(text, item.source), item.index)


@contextlib.contextmanager
def attributed(item: LoadedDomain) -> Iterator[None]:
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
