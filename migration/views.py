"""Migration and maintenance pages: the migrate dialog (with live pre-flight), post-copy, and a
host's maintenance buttons."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core import access
from core.errors import Forbidden, ServiceError
from core.middleware import login_required_json
from core.net import client_ip
from core.shortcuts import get_or_404, redirect_back
from hosts.selectors import host_get, visible_host
from jobs.selectors import job_get
from vms.selectors import vm_get

from . import services
from .forms import MigrateForm


def _vm(request, uuid):
    return get_or_404(request, lambda: vm_get(uuid=uuid), access.MIGRATE, what="vm.migrate")


@login_required
def vm_migrate(request, uuid):
    """The migrate dialog: targets with what matters for the choice, options, pre-flight results."""
    vm = _vm(request, uuid)
    context = {"vm": vm, "targets": services.migration_targets(vm=vm, user=request.user), "checks": None,
               "values": request.POST or {}}  # fmt: skip
    if request.method != "POST":
        return render(request, "migration/migrate.html", context)
    form = MigrateForm(request.POST)
    target = visible_host(user=request.user, host_id=form.data.get("target"))
    if target is None or not form.is_valid():
        messages.error(request, "Choose a target host." if target is None else form.first_error())
        return render(request, "migration/migrate.html", context)
    try:
        job = services.migration_request(vm=vm, target=target, params=form.options(), user=request.user,
                                         ip=client_ip(request))  # fmt: skip
    except services.PreflightFailed as exc:
        context["checks"] = exc.checks
        messages.error(request, f"{vm.name} cannot migrate to {target.name}: the failed checks are marked below.")
    except Forbidden:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Migration of {vm.name} to {target.name} started (job {job.pk}).")
        return redirect(f"/vms/{vm.uuid}/")
    return render(request, "migration/migrate.html", context)


@login_required_json
@require_POST
def vm_migrate_check(request, uuid):
    """Pre-flight checks for one target and set of options, as JSON (the dialog calls it live)."""
    try:
        vm = _vm(request, uuid)
    except Forbidden as exc:
        return JsonResponse({"ok": False, "error": exc.message, "code": exc.code}, status=403)
    form = MigrateForm(request.POST)
    target = visible_host(user=request.user, host_id=form.data.get("target"))
    if target is None:
        return JsonResponse({"ok": False, "error": "Choose a target host."}, status=400)
    if not form.is_valid():
        return JsonResponse({"ok": False, "error": form.first_error()}, status=400)
    try:
        options = services.migration_options(vm=vm, params=form.options())
    except ServiceError as exc:
        return JsonResponse({"ok": False, "error": exc.message}, status=400)
    checks = services.migration_preflight(vm=vm, target=target, options=options)
    return JsonResponse({"ok": all(c.ok for c in checks),
                         "checks": [{"name": c.name, "ok": c.ok, "message": c.message} for c in checks]})  # fmt: skip


@login_required
@require_POST
def job_postcopy(request, job_id):
    job = get_or_404(request, lambda: job_get(job_id=job_id), access.MIGRATE, what="job.postcopy")
    try:
        services.migration_postcopy(job=job, user=request.user)
    except Forbidden:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, "Switching to post-copy: the VM now runs on the target while its memory follows.")
    return redirect_back(request, f"/jobs/{job_id}/")


@login_required
@require_POST
def host_maintenance(request, host_id: int, action: str):
    if action not in ("enter", "leave"):
        raise Http404("unknown maintenance action")
    host = get_or_404(request, lambda: host_get(host_id=host_id), access.MAINTAIN, what=f"host.maintenance.{action}")
    try:
        if action == "enter":
            job = services.host_maintenance_enter(host=host, user=request.user, ip=client_ip(request))
            messages.success(
                request, f"{host.name} is entering maintenance; its running VMs are being moved (job {job.pk})."
            )
        else:
            services.host_maintenance_leave(host=host, user=request.user)
            messages.success(request, f"{host.name} is back in service.")
    except Forbidden:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("hosts:detail", host_id=host.pk)
