"""Read-only queries about VMs. Pages and API read the database only, never libvirt."""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from core.errors import NotFound
from core.params import parse_id

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
LIST_FIELDS_EXCLUDED = ("xml",)  # tens of KB per row: never loaded for lists


@dataclass(frozen=True)
class VMFilter:
    """What the fleet table / API list asks for. Unknown or malformed values are ignored."""

    q: str = ""
    host_id: int | None = None
    state: str = ""
    include_gone: bool = False

    @classmethod
    def from_params(cls, params) -> VMFilter:
        host = params.get("host") or ""
        state = params.get("state") or ""
        return cls(
            q=(params.get("q") or "").strip()[:200],
            host_id=parse_id(host),
            state=state if state in VMState.values else "",
            include_gone=str(params.get("gone") or "").lower() in ("1", "true", "yes", "on"),
        )


def sort_key(value: str | None) -> str:
    value = value or DEFAULT_SORT
    return value if value.lstrip("-") in SORTS else DEFAULT_SORT


def vm_list(*, filters: VMFilter = VMFilter(), sort: str = DEFAULT_SORT) -> QuerySet[VM]:
    """VMs matching ``filters`` in ``sort`` order (prefix "-" for descending)."""
    qs = VM.objects.select_related("host").defer(*LIST_FIELDS_EXCLUDED)
    if not filters.include_gone:
        qs = qs.filter(gone_at__isnull=True)
    if filters.host_id is not None:
        qs = qs.filter(host_id=filters.host_id)
    if filters.state:
        qs = qs.filter(state=filters.state)
    if filters.q:
        term = filters.q
        cond = Q(name__icontains=term)
        compact = term.replace("-", "").lower()
        if len(compact) >= 4 and all(c in "0123456789abcdef" for c in compact):
            cond |= Q(uuid__startswith=term.lower()) if len(term) < 36 else Q(uuid=_as_uuid(term))
        qs = qs.filter(cond)
    key = sort_key(sort)
    descending = key.startswith("-")
    columns = SORTS[key.lstrip("-")]
    return qs.order_by(*(f"-{c}" if descending else c for c in columns))


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
