"""Reading the audit log: filters, and what each user may read of it.

Administrators read everything, addresses included. Everyone else reads what was done to the
hosts and VMs they may see (who rebooted "their" VM) and their own sign-ins and tokens, without
addresses: where colleagues sign in from is for administrators only.
"""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from dataclasses import dataclass

from django.db.models import Q, QuerySet
from django.utils import timezone

from core import access
from core.params import parse_id

from .models import AuditEvent, Outcome


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page / API asks for. Malformed values are ignored, never an error."""

    user: str = ""
    action: str = ""
    host_id: int | None = None
    vm_uuid: str = ""
    outcome: str = ""
    since: dt.date | None = None
    until: dt.date | None = None
    q: str = ""

    @classmethod
    def from_params(cls, params) -> AuditFilter:
        def text(key: str, limit: int) -> str:
            value = params.get(key) or ""
            return value.strip()[:limit] if isinstance(value, str) else ""

        host = text("host", 12)
        vm = text("vm", 36)
        try:
            vm = str(uuidlib.UUID(vm)) if vm else ""
        except ValueError:
            vm = ""
        outcome = text("outcome", 16)
        return cls(
            user=text("user", 150),
            action=text("action", 64),
            host_id=parse_id(host),
            vm_uuid=vm,
            outcome=outcome if outcome in Outcome.values else "",
            since=_date(text("since", 10)),
            until=_date(text("until", 10)),
            q=text("q", 200),
        )

    @property
    def active(self) -> bool:
        return any((self.user, self.action, self.host_id, self.vm_uuid, self.outcome, self.since, self.until, self.q))


def _date(value: str) -> dt.date | None:
    try:
        day = dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None
    return day if day is None or dt.date(1970, 1, 1) <= day <= dt.date(9000, 1, 1) else None


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def shows_addresses(user) -> bool:
    return access.may(user, access.AUDIT_ALL)


def audit_list(*, user, filters: AuditFilter = AuditFilter()) -> QuerySet[AuditEvent]:
    """The events ``user`` may read that match ``filters``, newest first."""
    qs = AuditEvent.objects.all()
    if not access.may(user, access.AUDIT_ALL):
        visibility = access.visibility_for(user)
        if visibility.everything:
            about = Q(vm_uuid__isnull=False) | Q(host_ref__isnull=False)
        else:
            about = Q(vm_uuid__in=visibility.vm_uuids) | Q(host_ref__in=visibility.host_ids)
        qs = qs.filter(about | Q(user_id=getattr(user, "pk", None)))
    if filters.user:
        qs = qs.filter(username__iexact=filters.user)
    if filters.action:
        qs = qs.filter(Q(action=filters.action) | Q(action__startswith=f"{filters.action}."))
    if filters.host_id is not None:
        qs = qs.filter(host_ref=filters.host_id)
    if filters.vm_uuid:
        qs = qs.filter(vm_uuid=filters.vm_uuid)
    if filters.outcome:
        qs = qs.filter(outcome=filters.outcome)
    if filters.since:
        qs = qs.filter(at__gte=_day_start(filters.since))
    if filters.until:
        qs = qs.filter(at__lt=_day_start(filters.until + dt.timedelta(days=1)))
    if filters.q:
        qs = qs.filter(Q(message__icontains=filters.q) | Q(target_name__icontains=filters.q))
    return qs.order_by("-at", "-id")


def audit_actions(*, user) -> list[str]:
    """The kinds of action recorded so far in what ``user`` may read (for the filter menu)."""
    qs = audit_list(user=user).order_by().values_list("action", flat=True).distinct()
    return sorted(qs[:500])
