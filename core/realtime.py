"""Pushing typed events to browsers through the Channels layer.

Only services call ``push_on_commit``; it sends after the surrounding transaction commits, so a
browser never sees a change that was rolled back. Group names come from the helpers below. Every
event is a dict with a ``type`` from EVENT_TYPES and the shape declared by its TypedDict.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Literal, TypedDict

from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

FLEET_GROUP = "fleet"
JOBS_GROUP = "jobs"


def host_group(host_id: int) -> str:
    return f"host.{host_id}"


def vm_group(uuid: object) -> str:
    return f"vm.{uuid}"


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


# --- event schemas ----------------------------------------------------------------------------------
class VMUpdated(TypedDict):
    type: Literal["vm.updated"]
    vm: dict[str, Any]  # vms.serializers.VMSerializer shape


class HostUpdated(TypedDict):
    type: Literal["host.updated"]
    host: dict[str, Any]  # hosts.serializers.HostSerializer shape


class HostRemoved(TypedDict):
    type: Literal["host.removed"]
    host_id: int


class JobUpdated(TypedDict):
    type: Literal["job.updated"]
    job: dict[str, Any]  # vms.serializers.JobSerializer shape


class MigrationProgress(TypedDict):
    type: Literal["migration.progress"]
    job_id: int
    vm_uuid: str
    host: int | None  # source and target host ids: who may see it (core.access.Visibility)
    target_host: int | None
    progress: dict[str, Any]


Event = VMUpdated | HostUpdated | HostRemoved | JobUpdated | MigrationProgress
EVENT_TYPES = {"vm.updated", "host.updated", "host.removed", "job.updated", "migration.progress"}


class _Pusher:
    """One event loop thread per process that owns the channel layer's Redis connections.

    Sync code (services in workers, the listener's threads, views) hands events to it; reusing
    one loop keeps the layer's connection pool alive instead of opening a connection per event,
    and sending in submission order keeps the events of one VM in order.
    """

    def __init__(self) -> None:
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        if self._pid != os.getpid() or self._loop is None:
            with self._lock:
                if self._pid != os.getpid() or self._loop is None:
                    loop = asyncio.new_event_loop()
                    threading.Thread(target=loop.run_forever, name="realtime-push", daemon=True).start()
                    self._loop, self._pid = loop, os.getpid()
        return self._loop

    def send(self, groups: list[str], message: dict) -> None:
        layer = get_channel_layer()
        if layer is None:
            return

        async def send_all() -> None:
            for group in groups:
                await layer.group_send(group, message)

        future = asyncio.run_coroutine_threadsafe(send_all(), self._ensure())
        future.result(timeout=10)


_pusher = _Pusher()


def push_now(groups: list[str], event: Event) -> None:
    """Send ``event`` to ``groups`` immediately (use push_on_commit inside transactions)."""
    assert event["type"] in EVENT_TYPES, event["type"]
    try:
        _pusher.send(groups, {"type": "push", "event": event})
    except Exception:
        # A Redis hiccup must not fail the operation that caused the event; browsers refetch
        # what they show when their socket reconnects.
        log.warning("could not push %s to %s", event["type"], groups, exc_info=True)


def push_on_commit(groups: list[str], event: Event) -> None:
    """Send ``event`` to ``groups`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: push_now(groups, event))
