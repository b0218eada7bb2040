"""Tuning of daphne (the ASGI server) for request bodies of several MiB: volume upload chunks.

Daphne is built on Twisted, whose HTTP request spools every body of 100 kB or more to a temporary
file before the application sees it, and daphne then hands the body to the application in 8 KiB
messages. For an 8 MiB upload chunk that is a write to and a read from the web server's disk and a
thousand messages per chunk. Measured on the development machine (8 MiB PATCHes in a loop to an
application that only reads them): 267 MiB/s as daphne comes, 532 MiB/s with bodies up to
MAX_IN_MEMORY kept in memory and handed over in 1 MiB messages. Larger bodies keep Twisted's
temporary file (Django refuses them anyway).

Called by dashboard/asgi.py, which daphne imports before it builds its server.
"""

from __future__ import annotations

import inspect
import io
import logging

log = logging.getLogger(__name__)

MAX_IN_MEMORY = 9 * 2**20  # an upload chunk (8 MiB) and its headers
BODY_MESSAGE = MAX_IN_MEMORY  # bytes per http.request message: a chunk reaches the application whole


class Body:
    """A request body of a known length in one buffer of that size: each piece Twisted receives is
    copied into place once (a BytesIO would grow by reallocation, copying it again and again), and
    daphne's read takes it whole. A file with one position, as Twisted expects (tell() after the
    writes is the length)."""

    def __init__(self, length: int):
        self._buffer = bytearray(length)
        self._view = memoryview(self._buffer)
        self._size = 0
        self._pos = 0
        self.closed = False

    def write(self, data) -> None:
        end = self._pos + len(data)
        if end > len(self._buffer):  # longer than announced: grow rather than lose it
            self._view.release()
            self._buffer.extend(bytes(end - len(self._buffer)))
            self._view = memoryview(self._buffer)
        self._view[self._pos : end] = data
        self._pos = end
        self._size = max(self._size, end)

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else self._size + offset if whence == 2 else self._pos + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        data = self._view[self._pos : end].tobytes()
        self._pos = end
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._view.release()
            self._buffer = bytearray()


def tune_daphne() -> None:
    try:
        import daphne.server
        from twisted.web import http
    except ImportError:  # not running under daphne (tests, manage.py)
        return
    if getattr(http._getContentFile, "virtfleet", False):
        return
    spool = http._getContentFile

    def content_file(length):
        if length is not None and length < 100_000:
            return io.BytesIO()  # as Twisted does
        if length is not None and length <= MAX_IN_MEMORY:
            return Body(length)
        return spool(length)

    content_file.virtfleet = True  # type: ignore[attr-defined]
    http._getContentFile = content_file
    init = daphne.server.Server.__init__
    params = [p for p in inspect.signature(init).parameters.values() if p.default is not inspect.Parameter.empty]
    names = [p.name for p in params]
    if "request_buffer_size" in names and init.__defaults__ and len(init.__defaults__) == len(names):
        defaults = list(init.__defaults__)
        defaults[names.index("request_buffer_size")] = BODY_MESSAGE
        init.__defaults__ = tuple(defaults)
    else:
        log.warning("this daphne has no request_buffer_size default to raise: upload chunks go in 8 KiB messages")
