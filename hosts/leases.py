"""Host leases in Redis: each host is watched by exactly one listener at a time.

A listener holds ``lease:host:<id>`` (value: its id) with an expiry it keeps renewing. If it dies,
the lease lapses and another listener takes the host. Listeners also announce themselves in a
sorted set so each can compute its fair share and hand hosts over when others join.
"""

from __future__ import annotations

import math
import time

import redis

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaseBook:
    """Acquire, renew and release host leases for one listener."""

    def __init__(self, client: redis.Redis, owner: str, *, ttl: float = 15.0, prefix: str = "virtfleet"):
        self.client = client
        self.owner = owner
        self.ttl_ms = int(ttl * 1000)
        self.prefix = prefix
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def key(self, host_id: int) -> str:
        return f"{self.prefix}:lease:host:{host_id}"

    @property
    def registry(self) -> str:
        return f"{self.prefix}:listeners"

    # --- listener presence ------------------------------------------------------------------------
    def announce(self) -> None:
        now = time.time()
        pipe = self.client.pipeline()
        pipe.zadd(self.registry, {self.owner: now})
        pipe.zremrangebyscore(self.registry, 0, now - self.ttl_ms / 1000)
        pipe.execute()

    def withdraw(self) -> None:
        self.client.zrem(self.registry, self.owner)

    def live_listeners(self) -> list[str]:
        since = time.time() - self.ttl_ms / 1000
        return [
            m.decode() if isinstance(m, bytes) else m for m in self.client.zrangebyscore(self.registry, since, "+inf")
        ]

    def fair_share(self, host_count: int) -> int:
        """How many hosts this listener should hold so the live listeners split them evenly."""
        return math.ceil(host_count / max(1, len(self.live_listeners())))

    # --- leases -----------------------------------------------------------------------------------
    def acquire(self, host_id: int) -> bool:
        return bool(self.client.set(self.key(host_id), self.owner, nx=True, px=self.ttl_ms))

    def renew(self, host_id: int) -> bool:
        return bool(self._renew(keys=[self.key(host_id)], args=[self.owner, self.ttl_ms]))

    def renew_many(self, host_ids: list[int]) -> set[int]:
        """Renew several leases in one round trip; returns the ids still held."""
        if not host_ids:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for host_id in host_ids:
            self._renew(keys=[self.key(host_id)], args=[self.owner, self.ttl_ms], client=pipe)
        return {h for h, ok in zip(host_ids, pipe.execute(), strict=True) if ok}

    def release(self, host_id: int) -> None:
        self._release(keys=[self.key(host_id)], args=[self.owner])

    def holder(self, host_id: int) -> str | None:
        value = self.client.get(self.key(host_id))
        return value.decode() if isinstance(value, bytes) else value

    def holders(self, host_ids: list[int]) -> dict[int, str | None]:
        if not host_ids:
            return {}
        values = self.client.mget([self.key(h) for h in host_ids])
        return {h: (v.decode() if isinstance(v, bytes) else v) for h, v in zip(host_ids, values, strict=True)}
