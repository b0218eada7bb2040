"""``/api/transfers/<job>/``: the bytes of uploads and downloads, between browsers and workers.

A plain ASGI application rather than a Django view: a view would have the whole request body
spooled to the web server's disk before it runs, and a streamed response consumed into memory.
Here a request is refused before its body is read when it cannot be taken, a chunk is at most
CHUNK bytes in memory, and a download flows through as the worker reads it — and stops the worker
when the browser goes away.

    HEAD  → Upload-Offset (where an upload resumes), Upload-Length
    PATCH → a chunk at Upload-Offset (header X-Upload-Token: the upload's token) → 204 + the new offset;
            with Upload-Hole: <length> and no body, a run of zeros the browser saw and did not send
    GET   → a download's bytes (?token=: single-use)

Who may: a chunk (PATCH) carries the upload's token, a secret shown only to who started the upload
(as a pre-signed upload URL does): it alone is checked, so a chunk costs no session or user lookup.
HEAD and GET are for the user who started the job (signed in, or with their API token).
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async

from jobs.models import Job

from . import transfers

log = logging.getLogger(__name__)

UPLOAD, DOWNLOAD = "volume.upload", "volume.download"
ROOM_WAIT = 60.0  # seconds a chunk waits for room in the queue before the browser is told to retry
FIRST_CHUNK_WAIT = 120.0  # a download's worker may still be waiting for a free worker thread
NEXT_CHUNK_WAIT = 300.0  # a download whose worker sends nothing for this long has failed


def _user_from_token(header: str):
    from knox.auth import TokenAuthentication

    scheme, _, token = header.partition(" ")
    if scheme.lower() != "token" or not token:
        return None
    try:
        user, _auth = TokenAuthentication().authenticate_credentials(token.encode())
    except Exception:  # any refusal of the token is "not signed in"
        return None
    return user


def _job(job_id: int):
    return Job.objects.filter(pk=job_id).only("id", "kind", "status", "requested_by_id", "params").first()


class TransferApp:
    """The ASGI application: PATCH as it comes; HEAD and GET behind channels' AuthMiddlewareStack,
    which puts the signed-in user in the scope."""

    def __init__(self):
        self.signed_in = AuthMiddlewareStack(self.serve)

    async def __call__(self, scope, receive, send) -> None:
        if scope["method"] == "PATCH":
            return await self.serve(scope, receive, send)
        return await self.signed_in(scope, receive, send)

    async def serve(self, scope, receive, send) -> None:
        transfer = _Transfer(scope, receive, send)
        try:
            await transfer.run()
        finally:
            await transfer.redis.aclose()


class _Transfer:
    def __init__(self, scope, receive, send):
        self.scope, self.receive, self.send = scope, receive, send
        self.job_id = int(scope["url_route"]["kwargs"]["job_id"])
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        self.redis = transfers.async_client()

    async def run(self) -> None:
        method = self.scope["method"]
        if method == "PATCH":
            return await self._chunk()
        user = self.scope.get("user")
        if not (user and user.is_authenticated) and self.headers.get("authorization"):
            user = await database_sync_to_async(_user_from_token)(self.headers["authorization"])
        if user is None or not user.is_authenticated:
            return await self._json(401, "Sign in (or send your API token) to transfer a volume.", "not_signed_in")
        job = await database_sync_to_async(_job)(self.job_id)
        if job is None or job.requested_by_id != user.pk:
            return await self._json(404, "There is no such transfer of yours.", "not_found")
        if method == "HEAD":
            if job.kind != UPLOAD:
                return await self._json(405, "This transfer is a download: GET it.", "not_an_upload")
            return await self._offset(job)
        if method == "GET" and job.kind == DOWNLOAD:
            return await self._download(job)
        return await self._json(405, "Use HEAD or PATCH for an upload, GET for a download.", "method")

    # --- uploads ----------------------------------------------------------------------------------------
    async def _offset(self, job) -> None:
        offset = await transfers.accepted(self.redis, self.job_id)
        await self._respond(200, headers=[
            (b"Upload-Offset", str(offset).encode()), (b"Upload-Length", str(job.params.get("size", 0)).encode()),
            (b"Cache-Control", b"no-store"), (b"X-Job-Status", job.status.encode()),
        ])  # fmt: skip

    async def _body(self, limit: int) -> bytes | None:
        """The request body, or None when it is longer than ``limit`` or the browser went away."""
        parts, size = [], 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return None
            part = message.get("body", b"")
            size += len(part)
            if size > limit:
                return None
            parts.append(part)
            if not message.get("more_body"):
                return b"".join(parts)

    async def _chunk(self) -> None:
        if not await transfers.token_ok(self.redis, self.job_id, self.headers.get("x-upload-token", "")):
            return await self._json(403, "This upload's token is missing or not valid (it ended, or another page "
                                         "resumed it).", "bad_token")  # fmt: skip
        job = await database_sync_to_async(_job)(self.job_id)
        if job is None or job.kind != UPLOAD:
            return await self._json(404, "There is no such upload.", "not_found")
        if job.status not in ("queued", "running"):
            return await self._json(409, f"The upload has {job.status}.", "ended")
        try:
            offset = int(self.headers.get("upload-offset", ""))
            length = int(self.headers.get("content-length", "-1"))
            hole = int(self.headers.get("upload-hole", "0"))
        except ValueError:
            return await self._json(400, "Send the chunk's offset in an Upload-Offset header (and a hole's length "
                                         "in Upload-Hole).", "no_offset")  # fmt: skip
        size = int(job.params.get("size", 0))
        if hole:
            if hole < 0 or offset + hole > size or length > 0:
                return await self._json(400, f"A hole is a length (with no body) that ends within the file's {size} "
                                             "bytes.", "out_of_range")  # fmt: skip
            return await self._queue(offset, hole)
        if length > transfers.CHUNK:
            return await self._json(413, f"Chunks are at most {transfers.CHUNK} bytes.", "too_large")
        if length >= 0 and offset + length > size:
            return await self._json(400, f"The chunk would end at {offset + length} but the file has {size} bytes.",
                                    "out_of_range")  # fmt: skip
        body = await self._body(transfers.CHUNK)
        if body is None:
            return await self._json(413, f"Chunks are at most {transfers.CHUNK} bytes.", "too_large")
        if not body or offset + len(body) > size:
            return await self._json(400, f"The chunk would end at {offset + len(body)} but the file has {size} bytes.",
                                    "out_of_range")  # fmt: skip
        return await self._queue(offset, body)

    async def _queue(self, offset: int, body: bytes | int) -> None:
        waited = 0.0
        while True:
            # wait for room with a cheap look first: a full queue would otherwise take the whole chunk
            # over to Redis on every try
            if not await transfers.has_room(self.redis, self.job_id) and waited < ROOM_WAIT:
                await asyncio.sleep(0.01)
                waited += 0.01
                continue
            status, accepted = await transfers.push_chunk(self.redis, self.job_id, offset, body)
            if status == 1:
                return await self._respond(204, headers=[(b"Upload-Offset", str(accepted).encode())])
            if status == 0:
                return await self._json(409, f"The next chunk goes at offset {accepted}.", "offset",
                                        extra=[(b"Upload-Offset", str(accepted).encode())])  # fmt: skip
            if waited >= ROOM_WAIT or await transfers.state(self.redis, self.job_id) not in ("open", ""):
                return await self._json(503, "The host is not taking data now; send this chunk again.", "busy",
                                        extra=[(b"Retry-After", b"2")])  # fmt: skip
            await asyncio.sleep(0.02)
            waited += 0.02

    # --- downloads ----------------------------------------------------------------------------------------
    async def _download(self, job) -> None:
        token = (parse_qs(self.scope.get("query_string", b"").decode()).get("token") or [""])[0]
        if not await transfers.take_token(self.redis, self.job_id, token):
            return await self._json(403, "This download link was used already or is not valid: start the download "
                                         "again.", "bad_token")  # fmt: skip
        name = (job.params.get("volume") or "volume").replace('"', "").replace("\\", "")
        length = int(job.params.get("length") or 0)
        headers = [(b"Content-Type", b"application/octet-stream"), (b"Cache-Control", b"no-store"),
                   (b"Content-Disposition", f'attachment; filename="{name}"'.encode())]  # fmt: skip
        if length:
            headers.append((b"Content-Length", str(length).encode()))
        gone = asyncio.ensure_future(self._until_disconnect())
        try:
            first = await self._next(gone, FIRST_CHUNK_WAIT)
            if first is None:
                return
            if first == b"" or first.startswith(b"ERR"):
                why = first[3:].decode(errors="replace") if first else "the worker did not start it in time"
                return await self._json(502, f"The download could not start: {why}.", "download_failed")
            await self.send({"type": "http.response.start", "status": 200, "headers": headers})
            data: bytes | None = first
            while data is not None and data != transfers.END:
                if data == b"" or data.startswith(b"ERR"):
                    log.warning("download %s failed on the worker: %s", self.job_id, data[3:] or b"no data in time")
                    return  # the browser sees a short body: its download fails rather than ends
                await self.send({"type": "http.response.body", "body": data, "more_body": True})
                data = await self._next(gone, NEXT_CHUNK_WAIT)
            if data == transfers.END:
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if gone.done():
                await transfers.mark_gone(self.redis, self.job_id)  # the worker stops reading the volume
            else:
                gone.cancel()

    async def _until_disconnect(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass

    async def _next(self, gone: asyncio.Future, timeout: float) -> bytes | None:
        """The next piece of the download (b"" when none came in ``timeout``), or None when the
        browser went away first."""
        piece = asyncio.ensure_future(transfers.take_download(self.redis, self.job_id, timeout))
        done, _ = await asyncio.wait({piece, gone}, return_when=asyncio.FIRST_COMPLETED)
        if piece in done:
            return piece.result() or b""
        piece.cancel()
        return None

    # --- answers ---------------------------------------------------------------------------------------------
    async def _respond(self, status: int, body: bytes = b"", headers: list | None = None) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": headers or []})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def _json(self, status: int, message: str, code: str, *, extra: list | None = None) -> None:
        body = json.dumps({"error": message, "code": code}).encode()
        await self._respond(status, body, [(b"Content-Type", b"application/json"), *(extra or [])])
