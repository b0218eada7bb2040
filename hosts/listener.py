"""The listener: one libvirt connection per leased host, domain events turned into DB updates.

Threads and who does what:
- libvirt's event loop thread (virt.events) runs keepalives and delivers callbacks; callbacks only
  record a hint ("re-read VM u on host h") or "connection closed" and return.
- K event shards, each a thread with a coalescing queue: a burst of events for one VM collapses
  into one re-read; per-VM ordering holds because a VM always lands on the same shard.
- a small pool runs connects and full resyncs, so a slow or dead host never delays the others.
- the main thread keeps the leases (hosts/leases.py), starts and stops watchers, and reconnects
  lost hosts with capped exponential backoff.

Events are hints: every change is re-read from libvirt and written by the inventory family that
owns the object (hosts.inventory: domains come from vms.inventory), which pushes typed events to
the browsers. The listener itself knows no family.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
import uuid as uuidlib
import zlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import close_old_connections

from virt import HostConnection, VirtError, ensure_event_loop

from . import connections
from .inventory import Hint, families, family
from .leases import LeaseBook
from .models import Host
from .services import host_mark_unreachable, host_sync

log = logging.getLogger(__name__)


@dataclass
class ListenerConfig:
    lease_ttl: float = 15.0  # a dead listener's hosts are taken over within ttl + tick
    tick: float = 2.0  # lease renewal / rebalancing period
    shards: int = 4  # event-processing threads
    sync_workers: int = 8  # parallel connects / resyncs
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    lease_prefix: str = "virtfleet"  # separate lease namespaces (tests, several fleets on one Redis)


class Shard(threading.Thread):
    """A thread that re-reads objects named by events, coalescing repeats of the same object.

    A pending re-read is "full" unless every hint behind it said a cheap read answers it (a VM's
    suspend/resume changes only its power state).
    """

    def __init__(self, index: int, handler):
        super().__init__(name=f"listener-shard-{index}", daemon=True)
        self._pending: OrderedDict[tuple[int, str, str], bool] = OrderedDict()
        self._cond = threading.Condition()
        self._handler = handler
        self._stopping = False

    def submit(self, host_id: int, hint: Hint) -> None:
        full = hint.full
        with self._cond:
            key = (host_id, hint.family, hint.key)
            if key in self._pending:
                self._pending[key] = self._pending[key] or full
            else:
                self._pending[key] = full
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                (host_id, name, key), full = self._pending.popitem(last=False)
            try:
                self._handler(host_id, Hint(family=name, key=key, full=full))
            except Exception:
                log.exception("re-reading %s %s on host %s failed", name, key, host_id)


@dataclass
class Watcher:
    """The listener's view of one leased host."""

    host_id: int
    name: str
    conn: HostConnection | None = None
    connecting: bool = False
    failures: int = 0
    retry_at: float = 0.0
    generation: int = 0  # bumps on every (re)connect, so stale close callbacks are ignored
    events: int = 0
    last_error: str = ""
    host: Host | None = None  # the row as of the last (re)connect; events need only its id and name
    closed: threading.Event = field(default_factory=threading.Event)


class Listener:
    """Watches its share of the fleet's hosts until stopped."""

    def __init__(self, *, config: ListenerConfig | None = None, client: redis.Redis | None = None, owner: str = ""):
        self.config = config or ListenerConfig()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuidlib.uuid4().hex[:6]}"
        self.client = client or redis.Redis.from_url(settings.REDIS_URL)
        self.leases = LeaseBook(self.client, self.owner, ttl=self.config.lease_ttl, prefix=self.config.lease_prefix)
        self.watchers: dict[int, Watcher] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=self.config.sync_workers, thread_name_prefix="listener-sync")
        self._shards = [Shard(i, self._reread) for i in range(self.config.shards)]
        self._closed_hosts: queue.SimpleQueue[tuple[int, int, str]] = queue.SimpleQueue()
        self.events_received = 0

    # --- lifecycle ------------------------------------------------------------------------------
    def run(self) -> None:
        """Run until stop() (or SIGTERM via the command)."""
        ensure_event_loop()
        for shard in self._shards:
            shard.start()
        log.info("listener %s started", self.owner)
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                except redis.RedisError as exc:
                    log.warning("Redis unavailable (%s); keeping current hosts and retrying", exc)
                except Exception:
                    log.exception("listener tick failed")
                self._wake.wait(self.config.tick)
                self._wake.clear()
        finally:
            self._shutdown()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _shutdown(self) -> None:
        with self._lock:
            watchers = list(self.watchers.values())
            self.watchers.clear()
        for w in watchers:
            self._disconnect(w)
            try:
                self.leases.release(w.host_id)
            except redis.RedisError:
                pass
        try:
            self.leases.withdraw()
        except redis.RedisError:
            pass
        for shard in self._shards:
            shard.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        log.info("listener %s stopped", self.owner)

    # --- the main loop: leases, watchers, reconnects ------------------------------------------------
    def tick(self) -> None:
        close_old_connections()
        self.leases.announce()
        self._handle_closed()
        hosts = dict(Host.objects.values_list("pk", "name"))
        with self._lock:
            held = set(self.watchers)
        # Renew what we hold (one round trip); drop hosts that were removed or whose lease we lost.
        renewed = self.leases.renew_many(sorted(h for h in held if h in hosts))
        for host_id in held - renewed:
            log.info("giving up host %s (%s)", host_id, "removed" if host_id not in hosts else "lease lost")
            self._drop(host_id, release=host_id in hosts)
        with self._lock:
            held = set(self.watchers)
        share = self.leases.fair_share(len(hosts))
        # Hand over hosts beyond our fair share (another listener joined).
        for host_id in sorted(held)[share:] if len(held) > share + 1 else []:
            self._drop(host_id, release=True)
            held.discard(host_id)
        # Take free hosts up to our share.
        free = [h for h, owner in self.leases.holders(sorted(set(hosts) - held)).items() if owner is None]
        random.shuffle(free)
        for host_id in free[: max(0, share - len(held))]:
            if self.leases.acquire(host_id):
                with self._lock:
                    self.watchers[host_id] = Watcher(host_id=host_id, name=hosts[host_id])
                log.info("watching host %s (%s)", hosts[host_id], host_id)
        # (Re)connect hosts that need it.
        now = time.monotonic()
        with self._lock:
            due = [w for w in self.watchers.values() if w.conn is None and not w.connecting and w.retry_at <= now]
            for w in due:
                w.connecting = True
        for w in due:
            self._pool.submit(self._connect, w)

    def _drop(self, host_id: int, *, release: bool) -> None:
        with self._lock:
            w = self.watchers.pop(host_id, None)
        if w is not None:
            self._disconnect(w)
        if release:
            self.leases.release(host_id)

    # --- connecting -------------------------------------------------------------------------------
    def _connect(self, w: Watcher) -> None:
        close_old_connections()
        try:
            host = Host.objects.filter(pk=w.host_id).first()
            if host is None:
                return
            connections.manager().drop(host.pk)  # never reuse a connection that may be half-dead
            conn = connections.host_connection(host)
            generation = w.generation + 1
            conn.on_close(lambda reason, w=w, g=generation: self._on_close(w, g, reason))
            for inventory in families():
                inventory.subscribe(conn, lambda hint, hid=w.host_id: self._on_hint(hid, hint))
            with self._lock:
                if self.watchers.get(w.host_id) is not w:
                    conn.close()  # dropped while we were connecting
                    return
                w.conn, w.generation, w.failures, w.last_error, w.host = conn, generation, 0, "", host
            result = host_sync(host=host)  # full resync: nothing missed while we were away
            if result.ok:
                log.info(
                    "host %s connected and resynced in %.0f ms (%d domains)",
                    w.name,
                    result.seconds * 1000,
                    result.domains,
                )
            else:
                self._lost(w, result.error)
        except VirtError as exc:
            self._lost(w, str(exc))
        except Exception as exc:
            log.exception("connecting to host %s failed", w.name)
            self._lost(w, f"internal error while connecting: {exc}")
        finally:
            w.connecting = False

    def _lost(self, w: Watcher, error: str) -> None:
        """The host cannot be reached: say so, and retry with capped exponential backoff."""
        with self._lock:
            self._disconnect(w)
            w.failures += 1
            delay = min(self.config.backoff_max, self.config.backoff_initial * 2 ** (w.failures - 1))
            w.retry_at = time.monotonic() + delay * random.uniform(0.8, 1.2)
            first = w.last_error != error
            w.last_error = error
        host = Host.objects.filter(pk=w.host_id).first()
        if host is not None:
            host_mark_unreachable(host=host, error=error)
        if first:
            log.warning("host %s unreachable (%s); retrying in %.1f s", w.name, error, delay)

    def _disconnect(self, w: Watcher) -> None:
        conn, w.conn = w.conn, None
        if conn is not None:
            conn.close()
            connections.manager().drop(w.host_id)

    # --- callbacks from libvirt's event-loop thread: record and return -------------------------------
    def _on_hint(self, host_id: int, hint: Hint) -> None:
        self.events_received += 1
        shard = self._shards[zlib.crc32(hint.key.encode()) % len(self._shards)]
        shard.submit(host_id, hint)

    def _on_close(self, w: Watcher, generation: int, reason: str) -> None:
        self._closed_hosts.put((w.host_id, generation, reason))
        self._wake.set()

    def _handle_closed(self) -> None:
        while True:
            try:
                host_id, generation, reason = self._closed_hosts.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                w = self.watchers.get(host_id)
            if w is not None and w.generation == generation and w.conn is not None:
                self._pool.submit(self._lost, w, f"connection lost: {reason}")

    # --- re-reading one VM (on a shard thread) --------------------------------------------------------
    def _reread(self, host_id: int, hint: Hint) -> None:
        with self._lock:
            w = self.watchers.get(host_id)
            conn = w.conn if w else None
            host = w.host if w else None
        inventory = family(hint.family)
        if conn is None or host is None or inventory is None:
            return  # the resync after reconnecting will cover it
        close_old_connections()
        try:
            inventory.reread(host, conn, hint)
        except VirtError as exc:
            log.info("could not re-read %s %s on %s: %s", hint.family, hint.key, host.name, exc)
            return
        w.events += 1
