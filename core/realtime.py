"""Pushing typed events to browsers through the Channels layer.

Only services push, through ``push_on_commit``: it sends after the surrounding transaction
commits, so a browser never sees a change that was rolled back. Group names come from the helpers
below. Each app declares its events in its own ``events`` module as subclasses of ``Event``
(pydantic models: the shape is checked when the event is built, and a malformed one never leaves
the process); every payload that describes an object carries that object's ``version``, so a
browser drops an event older than what it shows. Beside each event travels its audience — the VM
and hosts it is about — which the live socket checks against the user's rights
(core.access.Visibility) before forwarding it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import ClassVar, TypedDict

from channels.layers import get_channel_layer
from django.db import transaction
from pydantic import BaseModel, ConfigDict

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
class Audience(TypedDict):
    """Who may receive an event: those who may see this VM, or any of these hosts."""

    vm: str | None
    hosts: list[int]


def audience(*, vm: object = None, hosts: list[int | None] | tuple = ()) -> Audience:
    return {"vm": str(vm) if vm else None, "hosts": [h for h in hosts if h is not None]}


class Payload(BaseModel):
    """An object as browsers receive it (the same shape as the API's): unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(BaseModel):
    """One event type: a subclass per type, with ``type`` a Literal and its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    TYPES: ClassVar[dict[str, type[Event]]] = {}
    type: str  # each subclass: a Literal with that literal as its default

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs) -> None:
        name = cls.model_fields["type"].default
        if not isinstance(name, str) or name in Event.TYPES:
            raise TypeError(f"event {cls.__name__}: type must be a new string default, got {name!r}")
        Event.TYPES[name] = cls

    def audience(self) -> Audience:
        raise NotImplementedError


def event_types() -> dict[str, type[Event]]:
    """Every declared event type (each app's events module adds its own when imported)."""
    return dict(Event.TYPES)


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
    if not isinstance(event, Event):
        raise TypeError(f"push_now takes an Event, not {type(event).__name__}")
    try:
        message = {"type": "push", "event": event.model_dump(mode="json"), "audience": event.audience()}
        _pusher.send(groups, message)
    except Exception:
        # A Redis hiccup must not fail the operation that caused the event; browsers refetch
        # what they show when their socket reconnects.
        log.warning("could not push %s to %s", event.type, groups, exc_info=True)


def push_on_commit(groups: list[str], event: Event) -> None:
    """Send ``event`` to ``groups`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: push_now(groups, event))
