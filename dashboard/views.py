"""Fleet overview: hosts and every VM of every host in one table — of what the user may see.
Reads the database only."""

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core import access
from core.pagination import PER_PAGE_CHOICES, paginate, query_without
from hosts.selectors import fleet_hosts, fleet_summary, host_choices
from vms.actions import ACTIONS
from vms.models import VMState
from vms.selectors import VMFilter, sort_key, vm_list


@login_required
@require_GET
def fleet(request):
    user = request.user
    fragment = request.GET.get("fragment")
    if fragment == "summary":
        return render(request, "dashboard/_summary.html", {"summary": fleet_summary(user=user)})
    if fragment == "hosts":
        hosts, complete = fleet_hosts(user=user)
        return render(request, "hosts/_host_rows.html", {"hosts": hosts, "hosts_complete": complete})
    filters = VMFilter.from_params(request.GET)
    sort = sort_key(request.GET.get("sort"))
    page = paginate(access.visible_vms(user, vm_list(filters=filters, sort=sort)), request)
    context = {
        "page": page,
        "filters": filters,
        "sort": sort,
        "host_choices": host_choices(user=user),
        "states": VMState.choices,
        "per_page_choices": PER_PAGE_CHOICES,
        "bulk_actions": [(k, a.label) for k, a in ACTIONS.items() if k != "delete"]
        if access.may(user, access.OPERATE)
        else [],
        "base_query": query_without(request, "page", "fragment"),
        "sort_query": query_without(request, "page", "sort", "fragment"),
    }
    if fragment == "vms":
        return render(request, "vms/_vm_table.html", context)
    context["hosts"], context["hosts_complete"] = fleet_hosts(user=user)
    context["summary"] = fleet_summary(user=user)
    return render(request, "dashboard/fleet.html", context)


def healthz(request):
    """Liveness for load balancers: the process answers and its database is reachable."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
