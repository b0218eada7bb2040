"""Read-only queries about hosts (pages and API read the database only, never libvirt)."""

from __future__ import annotations

import django_filters
from django.db.models import Count, Q, QuerySet, Sum

from core import access
from core.errors import NotFound
from core.filters import SearchFilter
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


STATUS_FILTERS = {
    "connected": Q(state="connected", maintenance=""),
    "unreachable": Q(state__in=["unreachable", "error"]),
    "maintenance": ~Q(maintenance=""),
    "pending": Q(state="pending"),
}


class HostFilterSet(django_filters.FilterSet):
    """The filters of the hosts list, on its page and in the API."""

    q = SearchFilter(method="search", help_text="name, URI or host name contains")
    status = django_filters.ChoiceFilter(choices=[(s, s) for s in STATUS_FILTERS], method="by_status")

    class Meta:
        model = Host
        fields: list[str] = []

    def search(self, qs, name, value):
        return qs.filter(Q(name__icontains=value) | Q(uri__icontains=value) | Q(hostname__icontains=value))

    def by_status(self, qs, name, value):
        return qs.filter(STATUS_FILTERS[value])


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


def visible_host(*, user, host_id) -> Host | None:
    """The host with id ``host_id`` if it exists and ``user`` may see it (a choice in a form), else None."""
    pk = parse_id(host_id)
    if pk is None:
        return None
    return access.visible_hosts(user, Host.objects.filter(pk=pk)).first()
