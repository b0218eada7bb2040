"""The audit log page: browse and filter, server-side pages. Read-only: there is nothing to edit."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.pagination import PER_PAGE_CHOICES, paginate, query_without

from .models import Outcome
from .selectors import AuditFilter, audit_actions, audit_list, shows_addresses


@login_required
@require_GET
def audit_log(request):
    filters = AuditFilter.from_params(request.GET)
    page = paginate(audit_list(user=request.user, filters=filters), request)
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
