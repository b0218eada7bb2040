"""Read-only queries about hosts (pages and API read the database only, never libvirt)."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet, Sum

from core import access
from core.errors import NotFound
from core.params import parse_id

from .models import Host


def host_list() -> QuerySet[Host]:
    """Hosts with their VM counts and the memory their running VMs use, in one query."""
    present = Q(vms__gone_at__isnull=True)
    running = present & Q(vms__state="running")
    return Host.objects.annotate(
        vm_count=Count("vms", filter=present),
        running_count=Count("vms", filter=running),
        vm_memory_kib=Sum("vms__memory_kib", filter=running),
    ).order_by("name")


FLEET_PAGE_ALL_HOSTS_UP_TO = 12
ATTENTION = Q(state__in=["unreachable", "error", "pending"]) | ~Q(maintenance="")


def fleet_hosts(*, user) -> tuple[list[Host], bool]:
    """The hosts the fleet page lists to ``user``: all of a small fleet, else those needing
    attention (≤ 10) — of the hosts the user may see.

    Returns (hosts, complete): ``complete`` is False when only the problem hosts are listed.
    """
    hosts = access.visible_hosts(user, host_list())
    if access.visible_hosts(user, Host.objects.all()).count() <= FLEET_PAGE_ALL_HOSTS_UP_TO:
        return list(hosts), True
    return list(hosts.filter(ATTENTION)[:10]), False


def host_choices(*, user) -> list[tuple[int, str]]:
    """(id, name) of every host ``user`` may see, for filter menus: no aggregates."""
    return list(access.visible_hosts(user, Host.objects.order_by("name")).values_list("pk", "name"))


def host_get(*, host_id: int) -> Host:
    pk = parse_id(host_id)
    try:
        if pk is None:
            raise Host.DoesNotExist
        return host_list().get(pk=pk)
    except Host.DoesNotExist:
        raise NotFound(f"There is no host with id {str(host_id)[:40]}.") from None


def host_payload(*, host: Host) -> dict:
    """The ``host.updated`` event body for ``host`` (same shape as the API's host)."""
    from .serializers import HostSerializer

    if not hasattr(host, "vm_count"):
        host = host_list().get(pk=host.pk)
    return HostSerializer(host).data


def fleet_summary(*, user) -> dict:
    """Totals for the fleet header, over the hosts and VMs ``user`` may see."""
    from vms.models import VM

    hosts = access.visible_hosts(user, Host.objects.all()).aggregate(
        total=Count("id"),
        connected=Count("id", filter=Q(state="connected")),
        unreachable=Count("id", filter=Q(state__in=["unreachable", "error"])),
        maintenance=Count("id", filter=~Q(maintenance="")),
        memory=Sum("memory_bytes"),
        free_memory=Sum("free_memory_bytes"),
        cpus=Sum("cpus"),
    )
    vms = access.visible_vms(user, VM.objects.present()).aggregate(
        total=Count("id"),
        running=Count("id", filter=Q(state="running")),
        paused=Count("id", filter=Q(state="paused")),
        shutoff=Count("id", filter=Q(state="shutoff")),
        other=Count("id", filter=~Q(state__in=["running", "paused", "shutoff"])),
    )
    return {"hosts": hosts, "vms": vms}
