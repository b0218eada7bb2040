"""The relay between a browser and the worker that holds a volume's libvirt stream, through Redis.

Upload: the browser sends chunks (``PATCH /api/transfers/<job>/`` with ``Upload-Offset``); the web
process checks the offset and the job's upload token and queues the chunk; the upload job's
worker takes chunks in order and writes them to ``virStorageVolUpload``. At most MAX_QUEUED chunks
wait in Redis: a browser that sends faster than the host takes waits for room. Nothing is kept on
the web server: a dropped connection loses at most the chunk in flight, and ``HEAD`` says where to
resume (the offset accepted so far).

Download: the worker reads ``virStorageVolDownload`` and queues chunks (again at most MAX_QUEUED);
the web process streams them to the browser, which has presented the download's single-use token.
"""

from __future__ import annotations

import hashlib
import secrets

import redis
import redis.asyncio as aioredis
from django.conf import settings

CHUNK = 8 * 2**20  # what browsers send per request (and downloads carry per message)
MAX_QUEUED = 4  # chunks waiting in Redis per transfer: the memory a transfer may hold there
TTL = 24 * 3600  # a transfer left alone this long is forgotten (its job has failed as stalled by then)
END = b"END"
DATA_TTL = 3600  # a chunk's bytes wait at most this long for the worker
# A chunk's bytes are SET under their own key first (a plain SET moves 8 MiB several times faster than
# the same bytes as an argument of a script or an RPUSH, measured on Redis 7.0); this script then
# queues the chunk — a short descriptor — if it is the next one and there is room, or drops its bytes.
_PUSH = """
local accepted = tonumber(redis.call('GET', KEYS[2]) or '0')
local status = 1
if tonumber(ARGV[1]) ~= accepted then status = 0
elseif redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[3]) then status = -1 end
if status ~= 1 then
  if KEYS[3] ~= '' then redis.call('DEL', KEYS[3]) end
  return {status, accepted}
end
redis.call('RPUSH', KEYS[1], ARGV[2])
accepted = redis.call('INCRBY', KEYS[2], tonumber(ARGV[5]))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return {1, accepted}
"""


def _key(job_id: int, what: str) -> str:
    return f"virtfleet:transfer:{job_id}:{what}"


def data_key(job_id: int, item: bytes) -> str:
    """Where the bytes of a queued chunk wait: named by its descriptor (offset and a nonce, so two
    tries of one chunk never share a key)."""
    return _key(job_id, "data:" + item.decode())


def keys(job_id: int) -> dict[str, str]:
    return {name: _key(job_id, name) for name in ("queue", "accepted", "token", "state", "down")}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=30, socket_connect_timeout=5)


def open_transfer(job_id: int) -> str:
    """A new transfer for job ``job_id``: its token (shown once to who asked for it)."""
    token = secrets.token_urlsafe(32)
    k = keys(job_id)
    pipe = _client().pipeline()
    pipe.set(k["token"], token_hash(token), ex=TTL)
    pipe.set(k["accepted"], 0, ex=TTL)
    pipe.set(k["state"], "open", ex=TTL)
    pipe.execute()
    return token


def new_token(job_id: int) -> str:
    """A fresh token for a running transfer (the old one stops working)."""
    token = secrets.token_urlsafe(32)
    _client().set(keys(job_id)["token"], token_hash(token), ex=TTL)
    return token


def accepted_now(job_id: int) -> int:
    return int(_client().get(keys(job_id)["accepted"]) or 0)


def close_transfer(job_id: int, state: str = "closed") -> None:
    """The job ended: say so to the web side, drop what is queued (and the bytes of its chunks)."""
    k = keys(job_id)
    client = _client()
    waiting = [data_key(job_id, item) for item in client.lrange(k["queue"], 0, -1) if item[16:17] == b"D"]
    pipe = client.pipeline()
    pipe.set(k["state"], state, ex=3600)
    pipe.delete(k["queue"], k["token"], *waiting)
    pipe.execute()


class LostChunk(Exception):
    pass


class UploadQueue:
    """The worker's end of an upload: chunks in order, as the web process queued them."""

    def __init__(self, job_id: int):
        self.job_id = job_id
        self.keys = keys(job_id)
        self.client = _client()

    def take(self, timeout: float) -> tuple[int, bytes | int] | None:
        """The next chunk: (offset, data), or (offset, length) for a run of zeros the browser did not
        send; None when none came within ``timeout`` seconds."""
        got = self.client.blpop([self.keys["queue"]], timeout=max(1, int(timeout)))
        if got is None:
            return None
        item = got[1]
        offset = int(item[:16], 16)
        if item[16:17] == b"H":
            return offset, int(item[17:], 16)
        data = self.client.getdel(data_key(self.job_id, item))
        if data is None:
            raise LostChunk(f"the chunk at offset {offset} is no longer in Redis (restarted, or out of memory?)")
        return offset, data

    def touch(self) -> None:
        for name in ("token", "accepted", "state"):
            self.client.expire(self.keys[name], TTL)


class DownloadQueue:
    """The worker's end of a download: queue chunks, waiting while the browser is behind."""

    def __init__(self, job_id: int):
        self.keys = keys(job_id)
        self.client = _client()

    def room(self) -> bool:
        return self.client.llen(self.keys["down"]) < MAX_QUEUED

    def gone(self) -> bool:
        """The browser stopped reading (its connection closed)."""
        return self.client.get(self.keys["state"]) in (b"gone",)

    def put(self, data: bytes) -> None:
        pipe = self.client.pipeline()
        pipe.rpush(self.keys["down"], data)
        pipe.expire(self.keys["down"], 3600)
        pipe.execute()

    def end(self, error: str = "") -> None:
        self.put(b"ERR" + error.encode()[:500] if error else END)


# --- the web side (asyncio) ------------------------------------------------------------------------------
def async_client():
    return aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=60, socket_connect_timeout=5)


async def push_chunk(client, job_id: int, offset: int, data: bytes | int) -> tuple[int, int]:
    """Queue a chunk at ``offset`` (bytes, or the length of a run of zeros): (1, accepted) queued;
    (0, accepted) wrong offset; (-1, accepted) no room yet (the worker is behind: wait, try again)."""
    k = keys(job_id)
    if isinstance(data, int):
        item, length, where = b"%016xH%x" % (offset, data), data, ""
    else:
        item, length = b"%016xD%s" % (offset, secrets.token_hex(8).encode()), len(data)
        where = data_key(job_id, item)
        await client.set(where, data, ex=DATA_TTL)
    status, accepted = await client.eval(_PUSH, 3, k["queue"], k["accepted"], where, offset, item, MAX_QUEUED, TTL,
                                         length)  # fmt: skip
    return int(status), int(accepted)


async def has_room(client, job_id: int) -> bool:
    return await client.llen(keys(job_id)["queue"]) < MAX_QUEUED


async def accepted(client, job_id: int) -> int:
    value = await client.get(keys(job_id)["accepted"])
    return int(value or 0)


async def token_ok(client, job_id: int, token: str) -> bool:
    stored = await client.get(keys(job_id)["token"])
    return bool(token) and stored is not None and secrets.compare_digest(stored.decode(), token_hash(token))


async def state(client, job_id: int) -> str:
    value = await client.get(keys(job_id)["state"])
    return value.decode() if value else ""


_TAKE_ONCE = """
local stored = redis.call('GET', KEYS[1])
if stored and stored == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""


async def take_token(client, job_id: int, token: str) -> bool:
    """A download's token works once: taken here, it cannot open a second stream."""
    if not token:
        return False
    return bool(await client.eval(_TAKE_ONCE, 1, keys(job_id)["token"], token_hash(token)))


async def mark_gone(client, job_id: int) -> None:
    await client.set(keys(job_id)["state"], "gone", ex=3600)


async def take_download(client, job_id: int, timeout: float) -> bytes | None:
    """The next piece the worker queued, waiting at most ``timeout`` seconds (in steps shorter
    than the client's socket timeout)."""
    left = timeout
    while left > 0:
        step = min(left, 10)
        got = await client.blpop([keys(job_id)["down"]], timeout=max(1, int(step)))
        if got is not None:
            return got[1]
        left -= step
    return None
