"""Byte-exact reading of a migration stream, with offsets in every error.

Why: a Remus stream never ends cleanly; it stops (EOF, a read error, or
garbage from a dying sender) and the receiver must say *where* and fail over.
Every structure is read with :meth:`ByteSource.read_exact`, which reads in
bounded chunks, so a lying length field costs at most what the stream really
holds (xl-side.md §3.6; task: bounded memory).
"""
from __future__ import annotations

import contextlib
import io
import os
from typing import BinaryIO, Iterator, Optional, Union

from ..errors import StreamError, StreamReadError, StreamTruncated

#: Largest single read; a record body is assembled from such chunks.
CHUNK = 1 << 20

StreamLike = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", int,
                   BinaryIO]


def how_it_ended(exc: StreamError) -> str:
    """``read-error``, ``truncated`` (inside a structure), ``eof`` (at a
    record boundary) or ``error`` (malformed data)."""
    if isinstance(exc, StreamReadError):
        return "read-error"
    if isinstance(exc, StreamTruncated):
        return "truncated" if exc.got else "eof"
    return "error"


class ByteSource:
    """Exact reads from a file object or fd, counting the offset."""

    def __init__(self, f, *, source: str = "<stream>", chunk: int = CHUNK
                 ) -> None:
        self._f = f
        self._fd = f if isinstance(f, int) else None
        self.source = source
        self.offset = 0
        self._chunk = chunk
        self._pushback = b""

    def error(self, message: str, offset: Optional[int] = None) -> StreamError:
        """A :class:`StreamError` at *offset* (default: the current one)."""
        return StreamError(message, source=self.source,
                           offset=self.offset if offset is None else offset)

    def _raw_read(self, n: int) -> bytes:
        try:
            if self._fd is not None:
                return os.read(self._fd, n)
            data = self._f.read(n)
        except OSError as exc:
            raise StreamReadError(f"read failed: {exc.strerror or exc}",
                                  source=self.source, offset=self.offset,
                                  errno=exc.errno) from exc
        return b"" if data is None else bytes(data)

    def read_some(self, n: int) -> bytes:
        """Up to *n* bytes (fewer only at EOF or on a short pipe read)."""
        if self._pushback:
            data, self._pushback = self._pushback[:n], self._pushback[n:]
        else:
            data = self._raw_read(min(n, self._chunk))
        self.offset += len(data)
        return data

    def read_exact(self, n: int, what: str) -> bytes:
        """Exactly *n* bytes of *what*, or :class:`StreamTruncated`.

        Memory grows with what actually arrives, never with *n* up front.
        """
        start = self.offset
        if n == 0:
            return b""
        buf = bytearray()
        while len(buf) < n:
            data = self.read_some(min(n - len(buf), self._chunk))
            if not data:
                raise StreamTruncated(
                    f"stream ends inside {what}: {len(buf)} of {n} bytes",
                    source=self.source, offset=start, needed=n, got=len(buf))
            buf += data
        return bytes(buf)

    def at_eof(self) -> bool:
        """True when no byte is left (reads one byte ahead if needed)."""
        if self._pushback:
            return False
        data = self._raw_read(1)
        self._pushback = data
        return not data

    def peek(self, n: int) -> bytes:
        """Up to *n* bytes without consuming them (for format detection)."""
        while len(self._pushback) < n:
            data = self._raw_read(n - len(self._pushback))
            if not data:
                break
            self._pushback += data
        return self._pushback[:n]


@contextlib.contextmanager
def open_source(stream: StreamLike, *, source: Optional[str] = None
                ) -> Iterator[ByteSource]:
    """A :class:`ByteSource` over bytes, a path, an fd or a binary file.

    Files opened here are closed on exit; fds and file objects are not.
    """
    if isinstance(stream, (bytes, bytearray, memoryview)):
        yield ByteSource(io.BytesIO(bytes(stream)), source=source or "<bytes>")
    elif isinstance(stream, int):
        yield ByteSource(stream, source=source or f"<fd {stream}>")
    elif isinstance(stream, (str, os.PathLike)):
        path = os.fspath(stream)
        try:
            f = open(path, "rb")
        except OSError as exc:
            raise StreamReadError(f"cannot open: {exc.strerror or exc}",
                                  source=source or path, errno=exc.errno
                                  ) from exc
        with f:
            yield ByteSource(f, source=source or path)
    else:
        name = source or getattr(stream, "name", None)
        yield ByteSource(stream, source=str(name) if name is not None
                         else "<stream>")
