"""Domain capabilities as a family of the host inventory: read at every full sync (when the listener
connects, reconnects or resyncs; a libvirt or QEMU upgrade restarts libvirtd, so it is read again),
written only when they changed."""

from __future__ import annotations

import logging

from django.utils import timezone

from hosts.inventory import Counts, Family, Hint, register_family
from hosts.models import Host
from virt import HostConnection, VirtError
from virt.capabilities import host_capabilities

from .models import HostCapabilities

log = logging.getLogger(__name__)


def capabilities_sync(host: Host, conn: HostConnection) -> Counts:
    """Read what ``host`` can run; one query when nothing changed."""
    try:
        caps = host_capabilities(conn)
    except VirtError as exc:  # the rest of the inventory goes on; the form falls back to what it knew
        log.warning("%s: capabilities not read: %s", host.name, exc)
        return Counts()
    data = caps.to_dict()
    known = HostCapabilities.objects.filter(host=host).first()
    if known is None:
        # get_or_create: two syncs of a new host (the listener's and a resync) may race to make it
        known, created = HostCapabilities.objects.get_or_create(host=host, defaults={"data": data,
                                                                                     "reported": caps.reported})  # fmt: skip
        if created:
            return Counts(created=1, objects=1)
    if known.data != data or known.reported != caps.reported:
        HostCapabilities.objects.filter(pk=known.pk).update(data=data, reported=caps.reported, read_at=timezone.now())
        return Counts(updated=1, objects=1)
    return Counts(objects=1)


def _reread(host: Host, conn: HostConnection, hint: Hint) -> None:
    capabilities_sync(host, conn)


def _subscribe(conn: HostConnection, hint) -> None:
    """libvirt has no event for changed capabilities: a full sync reads them."""


def _forget(host: Host) -> str:
    deleted, _ = HostCapabilities.objects.filter(host=host).delete()
    return f"{deleted} capabilities row" if deleted else ""


def register() -> None:
    register_family(Family(name="capabilities", sync=capabilities_sync, reread=_reread, subscribe=_subscribe,
                           forget=_forget))  # fmt: skip
