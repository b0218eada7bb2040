"""Read-only queries about VMs. Pages and API read the database only, never libvirt."""

from __future__ import annotations

import uuid as uuidlib

import django_filters
from django.db.models import Count, Q, QuerySet, Sum

from core import access
from core.errors import NotFound
from core.filters import FlagFilter, IdFilter, SearchFilter
from hosts.models import Host

from .models import VM, VMState

# sort key -> ORDER BY; every order ends in a unique column so pages are stable
SORTS = {
    "name": ("name", "uuid"),
    "host": ("host__name", "name", "uuid"),
    "state": ("state", "name", "uuid"),
    "vcpus": ("vcpus", "name", "uuid"),
    "memory": ("memory_kib", "name", "uuid"),
    "changed": ("state_changed", "uuid"),
}
DEFAULT_SORT = "name"
SORT_CHOICES = [(k, k) for k in SORTS] + [(f"-{k}", f"-{k}") for k in SORTS]
LIST_FIELDS_EXCLUDED = ("xml", "disks", "interfaces")  # tens of KB per row: never loaded for lists


class VMFilterSet(django_filters.FilterSet):
    """The filters of the VM table, on the fleet and host pages and in the API."""

    q = SearchFilter(method="search", help_text="name contains, or UUID prefix")
    host = IdFilter(field_name="host_id", help_text="only VMs of this host id")
    state = django_filters.ChoiceFilter(choices=VMState.choices)
    template = django_filters.ChoiceFilter(choices=[("1", "templates only"), ("0", "VMs only (no templates)")],
                                           method="only_templates", help_text="1: only templates; 0: no templates")  # fmt: skip
    # gone and sort shape the whole list rather than select rows: filter_queryset applies them
    gone = FlagFilter(method="applied_last", help_text="1: include VMs no longer present")
    sort = django_filters.ChoiceFilter(choices=SORT_CHOICES, method="applied_last", help_text="prefix - for descending")

    class Meta:
        model = VM
        fields: list[str] = []

    def search(self, qs, name, term):
        cond = Q(name__icontains=term)
        compact = term.replace("-", "").lower()
        if len(compact) >= 4 and all(c in "0123456789abcdef" for c in compact):
            cond |= Q(uuid__startswith=term.lower()) if len(term) < 36 else Q(uuid=_as_uuid(term))
        return qs.filter(cond)

    def only_templates(self, qs, name, value):
        return qs.filter(template=value == "1")

    def applied_last(self, qs, name, value):
        return qs

    def filter_queryset(self, queryset):
        data = getattr(self.form, "cleaned_data", {})  # the valid values (invalid ones are ignored)
        if not data.get("gone"):
            queryset = queryset.filter(gone_at__isnull=True)
        queryset = super().filter_queryset(queryset)
        key = sort_key(data.get("sort"))
        columns = SORTS[key.lstrip("-")]
        return queryset.order_by(*(f"-{c}" if key.startswith("-") else c for c in columns))


def sort_key(value: str | None) -> str:
    value = value or DEFAULT_SORT
    return value if value.lstrip("-") in SORTS else DEFAULT_SORT


def vm_list(*, params=None, host_id: int | None = None) -> QuerySet[VM]:
    """VMs matching the filters in ``params`` (a query dict: q, host, state, gone, sort), sorted."""
    qs = VM.objects.select_related("host").defer(*LIST_FIELDS_EXCLUDED)
    if host_id is not None:
        qs = qs.filter(host_id=host_id)
    return VMFilterSet(params or {}, queryset=qs).qs


def _as_uuid(value: str):
    try:
        return uuidlib.UUID(value)
    except ValueError:
        return None


def vm_get(*, uuid: str | uuidlib.UUID) -> VM:
    """One VM by UUID, including gone ones (their page keeps their history)."""
    value = uuid if isinstance(uuid, uuidlib.UUID) else _as_uuid(str(uuid))
    if value is None:
        raise NotFound(f"{uuid!r} is not a VM UUID.")
    try:
        return VM.objects.select_related("host").get(uuid=value)
    except VM.DoesNotExist:
        raise NotFound(f"There is no VM with UUID {value}.") from None


def fleet_summary(*, user) -> dict:
    """Totals for the fleet header, over the hosts and VMs ``user`` may see."""
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
