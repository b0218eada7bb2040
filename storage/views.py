"""Storage pages: every pool of the fleet, one pool with its volumes, a new pool; the forms of the
operations post here and become jobs (storage.services). Pages read the database only."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core import access
from core.errors import Forbidden, ServiceError
from core.filters import values
from core.net import client_ip
from core.pagination import paginate, query_without
from core.shortcuts import get_or_404, job_requested, redirect_back, run_job_request
from hosts.selectors import host_choices, host_get
from jobs.selectors import active_job, recent_jobs
from virt.storage import CREATABLE_TYPES

from . import services
from .forms import CloneForm, CopyForm, DeleteVolumeForm, PoolDefineForm, ResizeForm, VolumeCreateForm
from .models import PoolState, StoragePool
from .selectors import PoolFilterSet, host_storage, pool_get, pool_list, volume_get, volume_users
from .selectors import vm_disks as disks_of


def _pool_or_404(request, pool_id, action: str = access.VIEW, what: str = ""):
    return get_or_404(request, lambda: pool_get(pool_id=pool_id), action, what=what)


def _volume_or_404(request, volume_id, action: str = access.VIEW, what: str = ""):
    return get_or_404(request, lambda: volume_get(volume_id=volume_id), action, what=what)


@login_required
@require_GET
def pool_list_view(request):
    filterset = PoolFilterSet(request.GET, queryset=access.visible_on_hosts(request.user, pool_list()))
    page = paginate(filterset.qs.order_by("host__name", "name", "id"), request)
    context = {
        "page": page,
        "filters": values(filterset, host_id="host"),
        "host_choices": host_choices(user=request.user),
        "types": sorted(set(StoragePool.objects.values_list("type", flat=True))),
        "states": PoolState.choices,
        "base_query": query_without(request, "page", "fragment"),
    }
    if request.GET.get("fragment") == "pools":
        return render(request, "storage/_pool_table.html", context)
    return render(request, "storage/list.html", context)


def _volumes_context(request, pool) -> dict:
    page = paginate(pool.volumes.order_by("name"), request, default=50)
    volumes = list(page.object_list)
    users = volume_users(volumes)
    for volume in volumes:
        volume.used_by = users.get(volume.pk, [])
        volume.busy = active_job(lock_key=f"volume:{pool.host_id}:{pool.name}:{volume.name}")
    return {"volumes": volumes, "page": page, "base_query": query_without(request, "page", "fragment")}


@login_required
@require_GET
def pool_detail(request, pool_id):
    pool = _pool_or_404(request, pool_id)
    context = {
        "pool": pool,
        "pool_job": active_job(lock_key=f"pool:{pool.host_id}:{pool.name}"),
        "recent_jobs": recent_jobs(host_id=pool.host_id, limit=8, kind_prefix=("pool.", "volume.")),
        "other_pools": access.visible_on_hosts(request.user, pool_list())
        .filter(state=PoolState.ACTIVE)
        .exclude(pk=pool.pk),
        **_volumes_context(request, pool),
    }
    fragment = request.GET.get("fragment")
    if fragment == "volumes":
        return render(request, "storage/_volume_table.html", context)
    if fragment == "pool":
        return render(request, "storage/_pool_head.html", context)
    return render(request, "storage/pool.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def pool_new(request, host_id):
    host = get_or_404(request, lambda: host_get(host_id=host_id), access.MANAGE, what="pool.define")
    form = PoolDefineForm(request.POST or None, initial={"type": "dir", "build": True,
                                                          "start": True, "autostart": True})  # fmt: skip
    caps = host_storage(host)
    if caps and caps.reported:  # offer only what this host's libvirt says it can make
        form.fields["type"].choices = [(t, t) for t in CREATABLE_TYPES if t in caps.pool_types]
    if request.method == "POST" and form.is_valid():
        try:
            job = services.pool_define_request(host=host, name=form.cleaned_data["name"], params=form.params(),
                                               user=request.user, ip=client_ip(request))  # fmt: skip
        except Forbidden:
            raise
        except ServiceError as exc:
            field = (exc.field or "").removeprefix("params.")
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            job_requested(request, job, f"Pool {form.cleaned_data['name']} on {host.name}")
            return redirect(f"/hosts/{host.pk}/")
    return render(request, "storage/pool_new.html", {"form": form, "host": host, "caps": caps})


@login_required
@require_POST
def pool_action(request, pool_id, action):
    pool = _pool_or_404(request, pool_id, access.MANAGE, f"pool.{action}"[:64])
    return run_job_request(request, f"/storage/pools/{pool.pk}/",
                lambda: services.pool_job_request(pool=pool, action=action, user=request.user, ip=client_ip(request)),
                f"{action.replace('_', ' ').capitalize()} of pool {pool.name}")  # fmt: skip


@login_required
@require_POST
def volume_create(request, pool_id):
    pool = _pool_or_404(request, pool_id, access.MANAGE, "volume.create")
    form = VolumeCreateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{k}: {v[0]}" for k, v in form.errors.items()))
        return redirect_back(request, f"/storage/pools/{pool.pk}/")
    return run_job_request(request, f"/storage/pools/{pool.pk}/",
                lambda: services.volume_create_request(pool=pool, name=form.cleaned_data["name"], params=form.params(),
                                                       user=request.user, ip=client_ip(request)),
                f"Volume {form.cleaned_data['name']}")  # fmt: skip


VOLUME_FORMS = {"resize": ResizeForm, "clone": CloneForm, "delete": DeleteVolumeForm}


@login_required
@require_POST
def volume_action(request, volume_id, action):
    volume = _volume_or_404(request, volume_id, access.MANAGE, f"volume.{action}"[:64])
    back = f"/storage/pools/{volume.pool_id}/"
    if action == "download":
        try:
            transfer = services.download_request(volume=volume, user=request.user, ip=client_ip(request))
        except Forbidden:
            raise
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect_back(request, back)
        return redirect(transfer.url)  # the browser saves what the worker streams there
    if action == "copy":
        form = CopyForm(request.POST)
        target = (
            form.is_valid()
            and StoragePool.objects.select_related("host").filter(pk=form.cleaned_data["target_pool"]).first()
        )
        if not target or not access.may(request.user, access.VIEW, target):
            messages.error(request, "Choose the pool to copy it to.")
            return redirect_back(request, back)
        return run_job_request(request, back, lambda: services.volume_copy_request(
            volume=volume, target_pool=target, name=form.cleaned_data["name"],
            bandwidth=form.cleaned_data["bandwidth"] or 0, user=request.user, ip=client_ip(request)),
            f"Copy of {volume.name} to {target}")  # fmt: skip
    form_class = VOLUME_FORMS.get(action)
    form = form_class(request.POST) if form_class else None
    if form is not None and not form.is_valid():
        messages.error(request, "; ".join(f"{k}: {v[0]}" for k, v in form.errors.items()))
        return redirect_back(request, back)
    params = {k: v for k, v in (form.cleaned_data if form else {}).items() if v not in ("", None)}
    return run_job_request(request, back, lambda: services.volume_job_request(volume=volume, action=action, params=params,
                                                                   user=request.user, ip=client_ip(request)),
                f"{action.capitalize()} of {volume.name}")  # fmt: skip


def host_pools(request, host) -> dict:
    """The host page's storage section: its pools, and whether the user may add one."""
    return {"host_pools": list(pool_list().filter(host=host).order_by("name")),
            "can_add_pool": access.may(request.user, access.MANAGE, host)}  # fmt: skip


def vm_disks(request, vm) -> dict:
    return {"vm_disks": disks_of(vm)}
