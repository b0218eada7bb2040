"""Reading the audit log: filters, and what each user may read of it.

Administrators read everything, addresses included. Everyone else reads what was done to the
hosts and VMs they may see (who rebooted "their" VM) and their own sign-ins and tokens, without
addresses: where colleagues sign in from is for administrators only.
"""

from __future__ import annotations

import datetime as dt

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils import timezone

from core import access
from core.filters import IdFilter, SearchFilter

from .models import AuditEvent, Outcome


class BoundedDateField(forms.DateField):
    """A day between 1970 and 9000 (out of that range: ignored, like any malformed value)."""

    def to_python(self, value):
        day = super().to_python(value)
        if day is not None and not dt.date(1970, 1, 1) <= day <= dt.date(9000, 1, 1):
            raise forms.ValidationError("out of range", code="invalid")
        return day


class DayFilter(django_filters.DateFilter):
    field_class = BoundedDateField


class AuditFilterSet(django_filters.FilterSet):
    """The filters of the audit log, on its page and in the API. Malformed values are ignored."""

    user = django_filters.CharFilter(field_name="username", lookup_expr="iexact", max_length=150, help_text="user name")
    action = django_filters.CharFilter(method="by_action", max_length=64, help_text="e.g. vm or vm.reboot")
    host = IdFilter(field_name="host_ref")
    vm = django_filters.UUIDFilter(field_name="vm_uuid")
    outcome = django_filters.ChoiceFilter(choices=Outcome.choices)
    since = DayFilter(method="on_or_after")
    until = DayFilter(method="on_or_before")
    q = SearchFilter(method="search", help_text="host, VM or message contains")

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def by_action(self, qs, name, value):
        return qs.filter(Q(action=value) | Q(action__startswith=f"{value}."))

    def on_or_after(self, qs, name, day):
        return qs.filter(at__gte=_day_start(day))

    def on_or_before(self, qs, name, day):
        return qs.filter(at__lt=_day_start(day + dt.timedelta(days=1)))

    def search(self, qs, name, value):
        return qs.filter(Q(message__icontains=value) | Q(target_name__icontains=value))


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def shows_addresses(user) -> bool:
    return access.may(user, access.AUDIT_ALL)


def audit_readable(*, user) -> QuerySet[AuditEvent]:
    """The events ``user`` may read, newest first."""
    qs = AuditEvent.objects.all()
    if not access.may(user, access.AUDIT_ALL):
        visibility = access.visibility_for(user)
        if visibility.everything:
            about = Q(vm_uuid__isnull=False) | Q(host_ref__isnull=False)
        else:
            about = Q(vm_uuid__in=visibility.vm_uuids) | Q(host_ref__in=visibility.host_ids)
        qs = qs.filter(about | Q(user_id=getattr(user, "pk", None)))
    return qs.order_by("-at", "-id")


def audit_list(*, user, params=None) -> QuerySet[AuditEvent]:
    """The events ``user`` may read that match the filters in ``params`` (a query dict), newest first."""
    return AuditFilterSet(params or {}, queryset=audit_readable(user=user)).qs


def audit_actions(*, user) -> list[str]:
    """The kinds of action recorded so far in what ``user`` may read (for the filter menu)."""
    qs = audit_readable(user=user).order_by().values_list("action", flat=True).distinct()
    return sorted(qs[:500])
