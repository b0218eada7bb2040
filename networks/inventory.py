"""Virtual networks, their DHCP leases and the addresses guests have, as a family of the host
inventory (hosts.inventory).

A full sync reads every network of a host, the leases of every active one with DHCP, and the
addresses of running guests whose NICs no lease explains (ARP table, guest agent). A network event
(defined, started, stopped, undefined) re-reads that network. libvirt sends no event when dnsmasq
hands out or drops a lease, so each connection also re-reads leases every ``LEASE_POLL`` seconds
(hint key ``*leases``) — one call per active DHCP network, and nothing is written when nothing
changed. A driver without leases (the test driver) is asked once, then no more.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import asdict
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hosts.inventory import Counts, Family, Hint, apply_fields, register_family
from hosts.models import Host
from virt import HostConnection, NetworkNotFound, NotFound, OperationUnsupported, VirtError
from virt import network as vn
from vms.models import VM

from .events import guest_addresses_changed, leases_changed, network_changed, network_removed
from .models import GuestAddress, Lease, Network

log = logging.getLogger(__name__)

LEASES_KEY = "*leases"
_no_leases: weakref.WeakSet[HostConnection] = weakref.WeakSet()  # connections whose driver has no leases


def lease_poll() -> float:
    return float(getattr(settings, "VIRTFLEET", {}).get("LEASE_POLL", 10))


def network_fields(info: vn.NetworkInfo) -> dict:
    return {
        "uuid": info.uuid,
        "active": info.active,
        "persistent": info.persistent,
        "autostart": info.autostart,
        "mode": info.mode,
        "forward_mode": info.forward_mode,
        "bridge": info.bridge,
        "forward_dev": info.forward_dev,
        "ips": [
            {**{k: v for k, v in asdict(ip).items() if k != "hosts"}, "hosts": [asdict(h) for h in ip.hosts]}
            for ip in info.ips
        ],
        "xml": info.xml,
    }


def reconcile_networks(*, host: Host, networks: list[vn.NetworkInfo], read_at: datetime,
                       scope: set[str] | None = None) -> Counts:  # fmt: skip
    """Make the network rows of ``host`` agree with what it reported at ``read_at``; ``scope``: only
    these names were read (after an event), otherwise ``networks`` is the host's full listing."""
    counts = Counts(objects=len(networks))
    rows = Network.objects.filter(host=host)
    if scope is not None:
        rows = rows.filter(name__in=scope)
    existing = {row.name: row for row in rows}
    if set(existing) == {n.name for n in networks} and all(
        existing[n.name].observed_at <= read_at
        and not any(getattr(existing[n.name], k) != v for k, v in network_fields(n).items())
        for n in networks
    ):
        if existing:
            rows.filter(observed_at__lt=read_at).update(observed_at=read_at)
        return counts  # the common case of a resync: nothing changed, nothing locked
    with transaction.atomic():
        if not Host.objects.select_for_update().filter(pk=host.pk).exists():
            return counts
        rows = Network.objects.select_for_update().filter(host=host)
        if scope is not None:
            rows = rows.filter(name__in=scope)
        existing = {row.name: row for row in rows}
        for info in networks:
            row = existing.pop(info.name, None)
            if row is not None and row.observed_at > read_at:
                continue  # a later answer is already there
            created = row is None
            if created:
                row = Network(host=host, name=info.name)
            changed = apply_fields(row, network_fields(info)) or created
            row.observed_at = read_at
            if changed:
                row.save()
                if not row.active:
                    row.leases.all().delete()  # a stopped network hands out nothing
                network_changed(row)
                counts.created += created
                counts.updated += not created
            else:
                Network.objects.filter(pk=row.pk).update(observed_at=read_at)
        for row in existing.values():
            if row.observed_at <= read_at:
                network_removed(row.pk, host.pk)
                row.delete()
                counts.gone += 1
    return counts


def _lease_expiry(lease: vn.Lease) -> datetime | None:
    return datetime.fromtimestamp(lease.expires, tz=UTC) if lease.expires else None


def reconcile_leases(network: Network, reported: list[vn.Lease], read_at: datetime) -> bool:
    """The lease rows of ``network`` made to agree with dnsmasq's list; whether anything changed."""
    wanted = {(lease.mac, lease.ip): lease for lease in reported}
    have = {(row.mac, row.ip): row for row in network.leases.all()}
    same = set(wanted) == set(have) and all(
        have[k].hostname == v.hostname and have[k].expires_at == _lease_expiry(v) for k, v in wanted.items()
    )
    if same:
        return False
    macs = {mac for mac, _ in set(wanted) ^ set(have)} | {
        k[0] for k, v in wanted.items() if k in have and have[k].expires_at != _lease_expiry(v)
    }
    with transaction.atomic():
        network.leases.exclude(pk__in=[row.pk for k, row in have.items() if k in wanted]).delete()
        for key, lease in wanted.items():
            values = {"prefix": lease.prefix, "family": lease.family, "hostname": lease.hostname,
                      "client_id": lease.client_id, "expires_at": _lease_expiry(lease), "observed_at": read_at}  # fmt: skip
            row = have.get(key)
            if row is None:
                Lease.objects.create(network=network, mac=lease.mac, ip=lease.ip, **values)
            elif apply_fields(row, values):
                row.save()
        leases_changed(network, sorted(macs))
    return True


def _read_leases(host: Host, conn: HostConnection, networks) -> None:
    if conn in _no_leases:
        return
    read_at = timezone.now()
    for network in networks:
        try:
            reported = vn.leases(conn, network.name)
        except OperationUnsupported:
            _no_leases.add(conn)
            return
        except NetworkNotFound:
            continue  # undefined while we read: its event says so
        except VirtError as exc:
            log.info("%s: could not read the leases of network %s: %s", host.name, network.name, exc)
            continue
        reconcile_leases(network, reported, read_at)


def _unexplained_vms(host: Host) -> list[VM]:
    """Running VMs of ``host`` with a NIC no lease of the host's networks explains."""
    running = list(VM.objects.filter(host=host, gone_at__isnull=True, state="running").exclude(interfaces=[])
                   .only("pk", "uuid", "name", "interfaces", "xml", "host_id"))  # fmt: skip
    if not running:
        return []
    leased = set(Lease.objects.filter(network__host=host).values_list("mac", flat=True))
    return [vm for vm in running if any(nic.get("mac") and nic["mac"] not in leased for nic in vm.interfaces or ())]


def read_guest_addresses(host: Host, conn: HostConnection) -> None:
    """Addresses of running guests whose NICs have no lease: from the guest agent where the VM has
    one, else from the host's ARP table. Rows follow the answer; stopped VMs keep none."""
    vms = _unexplained_vms(host)
    keep = {vm.pk for vm in vms}
    stale = [pk for pk, vm_id in GuestAddress.objects.filter(vm__host=host).values_list("pk", "vm_id")
             if vm_id not in keep]  # fmt: skip
    if stale:
        GuestAddress.objects.filter(pk__in=stale).delete()
    for vm in vms:
        found: list[vn.GuestAddress] = []
        sources = ("agent", "arp") if vn.has_agent(vm.xml or "<domain/>") else ("arp",)
        for source in sources:
            try:
                found = vn.guest_addresses(conn, str(vm.uuid), source)
            except NotFound:
                break
            except VirtError as exc:  # an agent that does not answer, a driver without ARP
                log.debug("%s: %s addresses of %s: %s", host.name, source, vm.name, exc)
                continue
            if found:
                break
        wanted = {(a.mac, a.ip, a.source): a for a in found}
        have = {(r.mac, r.ip, r.source): r for r in vm.addresses.all()}
        if set(wanted) == set(have):
            continue
        with transaction.atomic():
            vm.addresses.exclude(pk__in=[r.pk for k, r in have.items() if k in wanted]).delete()
            for key, a in wanted.items():
                if key not in have:
                    GuestAddress.objects.create(vm=vm, mac=a.mac, ip=a.ip, prefix=a.prefix, family=a.family,
                                                source=a.source)  # fmt: skip
            guest_addresses_changed(vm)


def networks_sync(host: Host, conn: HostConnection) -> Counts:
    """Every network of ``host``, the leases of its active ones, and the guests' other addresses."""
    read_at = timezone.now()
    counts = reconcile_networks(host=host, networks=vn.list_networks(conn), read_at=read_at)
    refresh_leases(host, conn)
    return counts


def refresh_leases(host: Host, conn: HostConnection) -> None:
    if conn not in _no_leases:
        _read_leases(host, conn, [n for n in Network.objects.filter(host=host, active=True) if n.has_dhcp])
    read_guest_addresses(host, conn)


def network_reread(*, host: Host, name: str, conn: HostConnection) -> None:
    """Re-read one network (after an event or a job); gone from the host: gone here."""
    read_at = timezone.now()
    try:
        found = [vn.network_info(conn, name)]
    except NetworkNotFound:
        found = []
    reconcile_networks(host=host, networks=found, read_at=read_at, scope={name})
    network = Network.objects.filter(host=host, name=name, active=True).first()
    if network is not None and network.has_dhcp:
        _read_leases(host, conn, [network])


def _hints(conn: HostConnection, hint) -> None:
    vn.register_network_events(conn, lambda event: hint(Hint(family="networks", key=event.name)))

    def tick() -> None:
        if conn not in _no_leases:
            hint(Hint(family="networks", key=LEASES_KEY))

    vn.add_timer(conn, lease_poll(), tick)


def _reread(host: Host, conn: HostConnection, hint: Hint) -> None:
    if hint.key == LEASES_KEY:
        refresh_leases(host, conn)
    else:
        network_reread(host=host, name=hint.key, conn=conn)


def forget_host_networks(host: Host) -> str:
    rows = Network.objects.filter(host=host)
    count = rows.count()
    rows.delete()
    return f"{count} network row(s)"


def register() -> None:
    register_family(Family(name="networks", sync=networks_sync, reread=_reread, subscribe=_hints,
                           forget=forget_host_networks))  # fmt: skip
