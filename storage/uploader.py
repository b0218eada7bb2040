"""The upload protocol from Python, as storage.js speaks it in the browser: used by the tests, the
benchmark and scripts. An upload starts with ``POST /api/uploads/`` (a job, a transfer URL, a token);
then, in order from the offset the server gives, each piece is a ``PATCH`` of a chunk of data, or of
the length of a run of all-zero chunks (``Upload-Hole``: not sent, the host writes a hole)."""

from __future__ import annotations

from typing import BinaryIO

MAX_HOLE = 2**30  # bytes of zeros one request may stand for


def next_piece(f: BinaryIO, offset: int, size: int, chunk: int) -> tuple[bytes, int]:
    """What goes next from ``offset``: (a chunk of data, 0), or (b"", the length of the run of
    all-zero chunks there)."""
    f.seek(offset)
    data = f.read(chunk)
    if data.count(0) != len(data):
        return data, 0
    hole = len(data)
    while offset + hole < size and hole < MAX_HOLE:
        more = f.read(chunk)
        if more.count(0) != len(more):
            break
        hole += len(more)
    return b"", hole


def send(session, base: str, upload: dict, f: BinaryIO, size: int, *, stop_after: int | None = None) -> int:
    """Send the file from ``upload["offset"]`` (a requests session; ``upload``: the answer of
    POST /api/uploads/ or of a resume); returns the offset the server accepted. ``stop_after``: stop
    after so many pieces (a dropped connection, in tests). A full queue (503) is tried again."""
    url, offset, sent = base + upload["url"], upload["offset"], 0
    while offset < size and (stop_after is None or sent < stop_after):
        data, hole = next_piece(f, offset, size, upload["chunk_size"])
        headers = {"Upload-Offset": str(offset), "X-Upload-Token": upload["token"]}
        if hole:
            headers["Upload-Hole"] = str(hole)
        answer = session.patch(url, data=data, headers=headers)
        if answer.status_code == 204:
            offset = int(answer.headers["Upload-Offset"])
            sent += 1
        elif answer.status_code != 503:
            raise RuntimeError(f"the server answered {answer.status_code}: {answer.text[:300]}")
    return offset
