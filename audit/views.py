"""The audit log page: browse and filter, server-side pages. Read-only: there is nothing to edit."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.filters import values
from core.pagination import PER_PAGE_CHOICES, paginate, query_without

from .models import Outcome
from .selectors import AuditFilterSet, audit_actions, audit_readable, shows_addresses


@login_required
@require_GET
def audit_log(request):
    filterset = AuditFilterSet(request.GET, queryset=audit_readable(user=request.user))
    page = paginate(filterset.qs, request)
    filters = values(filterset, host_id="host", vm_uuid="vm")
    return render(
        request,
        "audit/list.html",
        {
            "page": page,
            "filters": filters,
            "actions": audit_actions(user=request.user),
            "outcomes": Outcome.choices,
            "show_ip": shows_addresses(request.user),
            "per_page_choices": PER_PAGE_CHOICES,
            "base_query": query_without(request, "page"),
        },
    )
