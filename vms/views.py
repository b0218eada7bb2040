"""The fleet page (every VM of every host) and the VM pages. Pages read the database only;
operations become jobs through vms.services."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import XmlLexer

from core import access
from core.errors import Forbidden, ServiceError
from core.filters import values
from core.net import client_ip
from core.pages import section_fragment
from core.pagination import PER_PAGE_CHOICES, paginate, query_without
from core.shortcuts import get_or_404, redirect_back
from hosts.selectors import fleet_hosts, host_choices
from jobs.selectors import active_job, recent_jobs

from . import actions, services
from .forms import ActionForm, BulkActionForm
from .models import VM, VMState
from .selectors import LIST_FIELDS_EXCLUDED, VMFilterSet, fleet_summary, sort_key, vm_get


def _vm_or_404(request, uuid, action: str = access.VIEW, what: str = ""):
    return get_or_404(request, lambda: vm_get(uuid=uuid), action, what=what)


def vm_table_context(request, *, host_id: int | None = None) -> dict:
    """What vms/_vm_table.html needs: the page of VMs ``request`` asks for (filters, sort, page)."""
    qs = VM.objects.select_related("host").defer(*LIST_FIELDS_EXCLUDED)
    if host_id is not None:
        qs = qs.filter(host_id=host_id)
    filterset = VMFilterSet(request.GET, queryset=access.visible_vms(request.user, qs))
    return {
        "page": paginate(filterset.qs, request),
        "filters": values(filterset, host_id="host", include_gone="gone"),
        "sort": sort_key(request.GET.get("sort")),
        "base_query": query_without(request, "page", "fragment"),
        "sort_query": query_without(request, "page", "sort", "fragment"),
    }


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
    context = {
        **vm_table_context(request),
        "host_choices": host_choices(user=user),
        "states": VMState.choices,
        "per_page_choices": PER_PAGE_CHOICES,
        "bulk_actions": [(k, a.label) for k, a in actions.ACTIONS.items() if k != actions.DELETE]
        if access.may(user, access.OPERATE)
        else [],
    }
    if fragment == "vms":
        return render(request, "vms/_vm_table.html", context)
    context["hosts"], context["hosts_complete"] = fleet_hosts(user=user)
    context["summary"] = fleet_summary(user=user)
    return render(request, "dashboard/fleet.html", context)


@login_required
@require_GET
def vm_detail(request, uuid):
    vm = _vm_or_404(request, uuid)
    context = {
        "vm": vm,
        "actions": actions.available(vm),
        "active_job": active_job(lock_key=f"vm:{vm.uuid}"),
        "recent_jobs": recent_jobs(vm_uuid=vm.uuid),
    }
    fragment = request.GET.get("fragment")
    if fragment == "actions":
        return render(request, "vms/_actions.html", context)
    if fragment == "jobs":
        return render(request, "jobs/_job_panel.html", context)
    if fragment and (answer := section_fragment(request, "vm", vm, context)):
        return answer  # a section another app put on this page (core.pages)
    # pygments escapes the XML it highlights
    highlighted = highlight(vm.public_xml, XmlLexer(), HtmlFormatter(cssclass="xml")) if vm.xml else ""
    context["xml_html"] = mark_safe(highlighted)  # noqa: S308
    return render(request, "vms/detail.html", context)


@login_required
@require_POST
def vm_action(request, uuid, kind):
    vm = _vm_or_404(request, uuid, access.OPERATE, f"vm.{kind}"[:64])
    form = ActionForm(request.POST)
    form.is_valid()
    try:
        job = services.vm_job_request(vm=vm, action=kind, params=form.params(kind), user=request.user,
                                      ip=client_ip(request))  # fmt: skip
    except Forbidden:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{job.get_kind_display()} of {vm.name} requested (job {job.pk}).")
    return redirect_back(request, f"/vms/{vm.uuid}/")


@login_required
def vm_delete(request, uuid):
    """The delete confirmation page (options: remove storage, force off first)."""
    vm = _vm_or_404(request, uuid, access.OPERATE, "vm.delete")
    if request.method == "POST":
        return vm_action(request, uuid, actions.DELETE)
    refusal = actions.refusal(vm, actions.DELETE, params={"force": True})
    return render(request, "vms/delete.html", {"vm": vm, "refusal": refusal})


@login_required
@require_POST
def vm_bulk_action(request):
    form = BulkActionForm(request.POST)
    form.is_valid()
    kind, uuids = form.cleaned_data.get("action", ""), form.uuids()
    chosen = VM.objects.select_related("host").filter(uuid__in=uuids)
    # VMs this user may not see are left out as if they did not exist (their names stay hidden).
    vms = list(access.visible_vms(request.user, chosen)[:1000])
    if not vms:
        messages.error(request, "Select at least one VM first.")
        return redirect_back(request, "/")
    try:
        result = services.vms_job_request_bulk(vms=vms, action=kind, params=form.params(kind), user=request.user,
                                               ip=client_ip(request))  # fmt: skip
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect_back(request, "/")
    label = actions.ACTIONS[kind].label.lower()
    if result.jobs:
        follow = f" (job {result.parent.pk} follows them)" if result.parent else ""
        messages.success(request, f"{len(result.jobs)} {label} job(s) started{follow}.")
    if result.refused:
        listed = "; ".join(r["error"] for r in result.refused[:5])
        more = f" (and {len(result.refused) - 5} more)" if len(result.refused) > 5 else ""
        messages.warning(request, f"{len(result.refused)} VM(s) skipped: {listed}{more}")
    return redirect_back(request, "/")
