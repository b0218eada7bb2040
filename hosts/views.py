"""Host pages: list, detail, add, edit, remove, sync now. Thin: forms in, services, render out."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from core import access
from core.errors import Forbidden, ServiceError
from core.filters import values
from core.pages import section_fragment
from core.pagination import paginate, query_without
from core.shortcuts import get_or_404

from . import services
from .forms import HostAddForm, HostEditForm
from .selectors import STATUS_FILTERS, HostFilterSet, host_get, host_list


def _host_or_404(request, host_id: int, action: str = access.VIEW, what: str = ""):
    return get_or_404(request, lambda: host_get(host_id=host_id), action, what=what)


def _form_error(form, exc: ServiceError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


@login_required
def host_list_view(request):
    filterset = HostFilterSet(request.GET, queryset=access.visible_hosts(request.user, host_list()))
    page = paginate(filterset.qs, request)
    filters = values(filterset)
    context = {
        "page": page,
        "hosts": page.object_list,
        "q": filters.q,
        "status": filters.status,
        "statuses": list(STATUS_FILTERS),
        "base_query": query_without(request, "page", "fragment"),
    }
    if request.GET.get("fragment") == "rows":
        return render(request, "hosts/_host_rows.html", context)
    return render(request, "hosts/list.html", context)


@login_required
def host_detail(request, host_id: int):
    """The host, and the sections other apps add to its page (its VMs, its maintenance...)."""
    host = _host_or_404(request, host_id)
    context = {"host": host}
    if request.GET.get("fragment") == "host-actions":
        return render(request, "hosts/_host_actions.html", context)
    return section_fragment(request, "host", host, context) or render(request, "hosts/detail.html", context)


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
