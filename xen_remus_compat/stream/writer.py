"""The small framing pieces the sender writes around libxc's stream.

Why: ``xl remus`` = xl header + libxl v2 records around the libxc stream
(xl-side.md §2.1, §3.5).  The engine reproduces that with stock libxc: it
writes these few bytes into the same fd that ``xc_domain_save`` writes page
data into.  Page data never passes through Python on the sender side
(design.md "Performance budget").

Order on the send fd (PV guest; HVM adds the emulator records):

1. after reading :data:`~.xl.BANNER` from the receiver: :func:`xl_header`
   (not in blackhole mode, ``xl remus -b``);
2. :data:`LIBXL_HEADER` + :data:`LIBXC_CONTEXT_RECORD`
   (together: :func:`preamble`), then call ``xc_domain_save``;
3. in libxc's ``checkpoint`` callback (libxc has just written its
   ``CHECKPOINT`` record and run ``postcopy``): :data:`CHECKPOINT_END_RECORD`
   (HVM: :func:`checkpoint_tail` with the emulator records first);
4. only if ``xc_domain_save`` returns success on a *plain* stream:
   :data:`LIBXL_END_RECORD`.  A Remus stream is never terminated.
"""
from __future__ import annotations

import os
from typing import Iterable, Optional

from . import libxl, xl
from .xl import ConfigLike

#: 16 bytes: ``4c 69 62 78 6c 46 6d 74  00 00 00 02  00 00 00 00``.
LIBXL_HEADER = libxl.pack_header()
#: 8 bytes: ``01 00 00 00 00 00 00 00``.
LIBXC_CONTEXT_RECORD = libxl.libxc_context_record()
#: 8 bytes: ``04 00 00 00 00 00 00 00``.
CHECKPOINT_END_RECORD = libxl.checkpoint_end_record()
#: 8 bytes: ``00 00 00 00 00 00 00 00``.
LIBXL_END_RECORD = libxl.end_record()


def xl_header(config: ConfigLike, *, json_config: bool = True) -> bytes:
    """xl header + optional data for *config* (a ``libxl_domain_config``).

    *config* is a dict (serialised with 4-space indent, like libxl), JSON
    text or bytes; a trailing NUL is added as xl does.  ``xl remus`` sends
    the config with ``c_info.domid`` forced to 0 (xl-side §2.1): callers
    pass it that way.
    """
    return xl.pack_header(config, json_config=json_config)


def preamble(config: Optional[ConfigLike], *, blackhole: bool = False) -> bytes:
    """Everything before libxc's first byte: [xl header] + libxl header +
    LIBXC_CONTEXT."""
    head = b"" if blackhole or config is None else xl_header(config)
    return head + LIBXL_HEADER + LIBXC_CONTEXT_RECORD


def checkpoint_tail(emulator_records: Iterable[bytes] = ()) -> bytes:
    """libxl's part of one checkpoint: emulator records (HVM), CHECKPOINT_END."""
    return b"".join(emulator_records) + CHECKPOINT_END_RECORD


def write_all(fd: int, data: bytes) -> None:
    """Write all of *data* to *fd*; an OSError propagates with its errno."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_banner(fd: int) -> None:
    """Wait for the receiver's 54-byte banner on *fd* (xl-side §3.1).

    Raises :class:`~.source.StreamError` quoting what arrived instead.
    """
    xl.expect_message(lambda n: os.read(fd, n), "banner")
