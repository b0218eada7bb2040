"""Host pages: list, detail, add, edit, remove, sync now. Thin: forms in, services, render out."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from core import access
from core.errors import Forbidden, ServiceError
from core.net import client_ip
from core.pagination import paginate, query_without
from core.shortcuts import get_or_404
from vms.selectors import VMFilter, sort_key, vm_list

from . import services
from .forms import HostAddForm, HostEditForm
from .selectors import host_get, host_list


def _host_or_404(request, host_id: int, action: str = access.VIEW, what: str = ""):
    return get_or_404(request, lambda: host_get(host_id=host_id), action, what=what)


def _form_error(form, exc: ServiceError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


STATUS_FILTERS = {
    "connected": Q(state="connected", maintenance=""),
    "unreachable": Q(state__in=["unreachable", "error"]),
    "maintenance": ~Q(maintenance=""),
    "pending": Q(state="pending"),
}


@login_required
def host_list_view(request):
    q = (request.GET.get("q") or "").strip()[:200]
    status = request.GET.get("status") or ""
    hosts = access.visible_hosts(request.user, host_list())
    if q:
        hosts = hosts.filter(Q(name__icontains=q) | Q(uri__icontains=q) | Q(hostname__icontains=q))
    if status in STATUS_FILTERS:
        hosts = hosts.filter(STATUS_FILTERS[status])
    page = paginate(hosts, request)
    context = {
        "page": page,
        "hosts": page.object_list,
        "q": q,
        "status": status if status in STATUS_FILTERS else "",
        "statuses": list(STATUS_FILTERS),
        "base_query": query_without(request, "page", "fragment"),
    }
    if request.GET.get("fragment") == "rows":
        return render(request, "hosts/_host_rows.html", context)
    return render(request, "hosts/list.html", context)


@login_required
def host_detail(request, host_id: int):
    host = _host_or_404(request, host_id)
    filters = VMFilter(host_id=host.pk, q=(request.GET.get("q") or "").strip()[:200])
    sort = sort_key(request.GET.get("sort"))
    page = paginate(access.visible_vms(request.user, vm_list(filters=filters, sort=sort)), request)
    from vms.models import Job, JobKind

    maintenance_job = Job.objects.active().filter(kind=JobKind.MAINTENANCE, host=host).first()
    context = {
        "host": host,
        "maintenance_job": maintenance_job,
        "maintenance_children": maintenance_job.children.select_related("target_host") if maintenance_job else [],
        "last_maintenance": Job.objects.filter(kind=JobKind.MAINTENANCE, host=host).first(),
        "page": page,
        "filters": filters,
        "sort": sort,
        "hide_host_column": True,
        "base_query": query_without(request, "page", "fragment"),
        "sort_query": query_without(request, "page", "sort", "fragment"),
    }
    if request.GET.get("fragment") == "vms":
        return render(request, "vms/_vm_table.html", context)
    if request.GET.get("fragment") == "maintenance":
        return render(request, "hosts/_maintenance.html", context)
    if request.GET.get("fragment") == "host-actions":
        return render(request, "hosts/_host_actions.html", context)
    return render(request, "hosts/detail.html", context)


@sensitive_post_parameters("sasl_password")
@login_required
@require_http_methods(["GET", "POST"])
def host_add(request):
    access.require(request.user, access.MANAGE, what="host.add")
    form = HostAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            host = services.host_add(**form.cleaned_data, user=request.user)
        except Forbidden:
            raise
        except ServiceError as exc:
            _form_error(form, exc)
        else:
            if host.state == "connected":
                messages.success(request, f"Host {host.name} added; its VMs are being read.")
            else:
                messages.warning(request, f"Host {host.name} added but not reachable yet: {host.last_error}")
            return redirect("hosts:detail", host_id=host.pk)
    return render(request, "hosts/form.html", {"form": form, "title": "Add a host"})


@sensitive_post_parameters("sasl_password")
@login_required
@require_http_methods(["GET", "POST"])
def host_edit(request, host_id: int):
    host = _host_or_404(request, host_id, access.MANAGE, "host.update")
    initial = {
        k: getattr(host, k) for k in ("name", "uri", "ssh_key_path", "sasl_username", "peer_uri", "migration_address")
    }
    form = HostEditForm(request.POST or None, initial=initial, has_password=bool(host.sasl_password))
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        clear = data.pop("clear_sasl_password")
        data["sasl_password"] = "" if clear else (data["sasl_password"] or None)
        try:
            services.host_update(host=host, **data, user=request.user)
        except Forbidden:
            raise
        except ServiceError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Host {host.name} saved.")
            return redirect("hosts:detail", host_id=host.pk)
    return render(request, "hosts/form.html", {"form": form, "host": host, "title": f"Edit {host.name}"})


@login_required
@require_http_methods(["GET", "POST"])
def host_remove(request, host_id: int):
    host = _host_or_404(request, host_id, access.MANAGE, "host.remove")
    if request.method == "POST":
        try:
            services.host_remove(host=host, user=request.user)
        except Forbidden:
            raise
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect("hosts:detail", host_id=host.pk)
        messages.success(request, f"Host {host.name} removed. Its VMs were not touched.")
        return redirect("hosts:list")
    return render(request, "hosts/remove.html", {"host": host})


@login_required
@require_POST
def host_sync(request, host_id: int):
    host = _host_or_404(request, host_id, access.MANAGE, "host.sync")
    services.host_sync_request(host=host, user=request.user)
    messages.info(request, f"Resync of {host.name} requested; changes appear as they are found.")
    return redirect("hosts:detail", host_id=host.pk)


@login_required
@require_POST
def host_maintenance(request, host_id: int, action: str):
    from .maintenance import host_maintenance_enter, host_maintenance_leave

    if action not in ("enter", "leave"):
        raise Http404("unknown maintenance action")
    host = _host_or_404(request, host_id, access.MAINTAIN, f"host.maintenance.{action}")
    try:
        if action == "enter":
            job = host_maintenance_enter(host=host, user=request.user, ip=client_ip(request))
            messages.success(
                request, f"{host.name} is entering maintenance; its running VMs are being moved (job {job.pk})."
            )
        else:
            host_maintenance_leave(host=host, user=request.user)
            messages.success(request, f"{host.name} is back in service.")
    except Forbidden:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("hosts:detail", host_id=host.pk)
