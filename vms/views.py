"""VM and job pages. Pages read the database only; operations become jobs through vms.jobs."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import XmlLexer

from core import access
from core.errors import Forbidden, ServiceError
from core.middleware import login_required_json
from core.net import client_ip
from core.pagination import paginate, query_without
from core.params import parse_id
from core.shortcuts import get_or_404
from hosts.selectors import host_list

from . import actions, jobs
from .models import VM, JobKind, JobStatus
from .selectors import vm_get
from .selectors_jobs import JobFilter, job_get, job_list, vm_active_job


def _vm_or_404(request, uuid, action: str = access.VIEW, what: str = ""):
    return get_or_404(request, lambda: vm_get(uuid=uuid), action, what=what)


def _job_or_404(request, job_id, action: str = access.VIEW, what: str = ""):
    return get_or_404(request, lambda: job_get(job_id=job_id), action, what=what)


@login_required
@require_GET
def vm_detail(request, uuid):
    vm = _vm_or_404(request, uuid)
    context = {
        "vm": vm,
        "actions": actions.available(vm),
        "active_job": vm_active_job(vm_uuid=vm.uuid),
        "recent_jobs": job_list(filters=JobFilter(vm_uuid=str(vm.uuid)))[:10],
    }
    fragment = request.GET.get("fragment")
    if fragment == "actions":
        return render(request, "vms/_actions.html", context)
    if fragment == "jobs":
        return render(request, "jobs/_job_panel.html", context)
    # pygments escapes the XML it highlights
    highlighted = highlight(vm.public_xml, XmlLexer(), HtmlFormatter(cssclass="xml")) if vm.xml else ""
    context["xml_html"] = mark_safe(highlighted)  # noqa: S308
    return render(request, "vms/detail.html", context)


def _params_from_form(kind: str, post) -> dict:
    params = {}
    if kind == JobKind.DELETE:
        params = {"remove_storage": post.get("remove_storage") == "on", "force": post.get("force") == "on"}
    elif kind == JobKind.SHUTDOWN and post.get("timeout"):
        params = {"timeout": post.get("timeout")}
    elif kind == JobKind.START and post.get("force_boot") == "on":
        params = {"force_boot": True}
    return params


def _back(request, default):
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(default)


@login_required
@require_POST
def vm_action(request, uuid, kind):
    vm = _vm_or_404(request, uuid, access.OPERATE, f"vm.{kind}"[:64])
    try:
        job = jobs.job_request(
            vm=vm, kind=kind, params=_params_from_form(kind, request.POST), user=request.user, ip=client_ip(request)
        )
    except Forbidden:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{job.get_kind_display()} of {vm.name} requested (job {job.pk}).")
    return _back(request, f"/vms/{vm.uuid}/")


@login_required
def vm_delete(request, uuid):
    """The delete confirmation page (options: remove storage, force off first)."""
    vm = _vm_or_404(request, uuid, access.OPERATE, "vm.delete")
    if request.method == "POST":
        return vm_action(request, uuid, JobKind.DELETE)
    return render(
        request, "vms/delete.html", {"vm": vm, "refusal": actions.refusal(vm, JobKind.DELETE, params={"force": True})}
    )


@login_required
@require_POST
def vm_bulk_action(request):
    kind = request.POST.get("action", "")
    uuids = request.POST.getlist("vms")[:1000]
    chosen = VM.objects.select_related("host").filter(uuid__in=[u for u in uuids if _is_uuid(u)])
    # VMs this user may not see are left out as if they did not exist (their names stay hidden).
    vms = list(access.visible_vms(request.user, chosen)[:1000])
    if not vms:
        messages.error(request, "Select at least one VM first.")
        return _back(request, "/")
    try:
        result = jobs.jobs_request_bulk(
            vms=vms, kind=kind, params=_params_from_form(kind, request.POST), user=request.user, ip=client_ip(request)
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _back(request, "/")
    label = actions.ACTIONS[kind].label.lower() if kind in actions.ACTIONS else kind
    if result.jobs:
        messages.success(request, f"{len(result.jobs)} {label} job(s) started.")
    if result.refused:
        listed = "; ".join(r["error"] for r in result.refused[:5])
        more = f" (and {len(result.refused) - 5} more)" if len(result.refused) > 5 else ""
        messages.warning(request, f"{len(result.refused)} VM(s) skipped: {listed}{more}")
    return _back(request, "/")


def _is_uuid(value: str) -> bool:
    import uuid as uuidlib

    try:
        uuidlib.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


# --- jobs ---------------------------------------------------------------------------------------------
@login_required
@require_GET
def job_list_view(request):
    filters = JobFilter.from_params(request.GET)
    page = paginate(access.visible_jobs(request.user, job_list(filters=filters).select_related(None)), request)
    context = {
        "page": page,
        "filters": filters,
        "statuses": [("active", "Active"), *JobStatus.choices],
        "kinds": JobKind.choices,
        "hosts": access.visible_hosts(request.user, host_list()),
        "base_query": query_without(request, "page", "fragment"),
    }
    if request.GET.get("fragment") == "jobs":
        return render(request, "jobs/_job_table.html", context)
    return render(request, "jobs/list.html", context)


@login_required
@require_GET
def job_detail(request, job_id):
    job = _job_or_404(request, job_id)
    children = access.visible_jobs(request.user, job.children.select_related("target_host"))
    return render(request, "jobs/detail.html", {"job": job, "events": job.events.all(), "children": children})


@login_required
@require_POST
def job_cancel(request, job_id):
    job = _job_or_404(request, job_id, access.CANCEL, "job.cancel")
    try:
        job = jobs.job_cancel(job=job, user=request.user)
    except Forbidden:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _back(request, f"/jobs/{job_id}/")
    if job.status == JobStatus.CANCELLED:
        messages.success(request, f"Job {job.pk} cancelled.")
    else:
        messages.info(request, f"Cancellation of job {job.pk} requested; it stops at the next safe point.")
    return _back(request, f"/jobs/{job.pk}/")


# --- migration ----------------------------------------------------------------------------------------
def _migration_params(post) -> dict:
    params = {
        "copy_storage": post.get("copy_storage", ""),
        "bandwidth_mibs": post.get("bandwidth_mibs", ""),
        "max_downtime_ms": post.get("max_downtime_ms", ""),
        "auto_converge": post.get("auto_converge") == "on",
        "compressed": post.get("compressed") == "on",
        "postcopy": post.get("postcopy") == "on",
    }
    if post.get("mode") in ("live", "offline"):
        params["live"] = post.get("mode") == "live"
    return params


def _target_or_none(request, value):
    """The chosen target host, if it exists and the user may see it."""
    from hosts.models import Host

    pk = parse_id(value)
    if pk is None:
        return None
    return access.visible_hosts(request.user, Host.objects.filter(pk=pk)).first()


@login_required
def vm_migrate(request, uuid):
    """The migrate dialog: targets with what matters for the choice, options, pre-flight results."""
    from .migration import PreflightFailed, migration_request, migration_targets

    vm = _vm_or_404(request, uuid, access.MIGRATE, "vm.migrate")
    context = {
        "vm": vm,
        "targets": migration_targets(vm=vm, user=request.user),
        "checks": None,
        "values": request.POST or {},
    }
    if request.method == "POST":
        target = _target_or_none(request, request.POST.get("target"))
        if target is None:
            messages.error(request, "Choose a target host.")
        else:
            try:
                job = migration_request(
                    vm=vm,
                    target=target,
                    params=_migration_params(request.POST),
                    user=request.user,
                    ip=client_ip(request),
                )
            except PreflightFailed as exc:
                context["checks"] = exc.checks
                messages.error(
                    request, f"{vm.name} cannot migrate to {target.name}: the failed checks are marked below."
                )
            except Forbidden:
                raise
            except ServiceError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Migration of {vm.name} to {target.name} started (job {job.pk}).")
                return redirect(f"/vms/{vm.uuid}/")
    return render(request, "vms/migrate.html", context)


@login_required_json
@require_POST
def vm_migrate_check(request, uuid):
    """Pre-flight checks for one target and set of options, as JSON (the dialog calls it live)."""
    from django.http import JsonResponse

    from .migration import migration_options, migration_preflight

    try:
        vm = _vm_or_404(request, uuid, access.MIGRATE, "vm.migrate")
    except Forbidden as exc:
        return JsonResponse({"ok": False, "error": exc.message, "code": exc.code}, status=403)
    target = _target_or_none(request, request.POST.get("target"))
    if target is None:
        return JsonResponse({"ok": False, "error": "Choose a target host."}, status=400)
    try:
        options = migration_options(vm=vm, params=_migration_params(request.POST))
    except ServiceError as exc:
        return JsonResponse({"ok": False, "error": exc.message}, status=400)
    checks = migration_preflight(vm=vm, target=target, options=options)
    return JsonResponse(
        {
            "ok": all(c.ok for c in checks),
            "checks": [{"name": c.name, "ok": c.ok, "message": c.message} for c in checks],
        }
    )


@login_required
@require_POST
def job_postcopy(request, job_id):
    from .migration import migration_postcopy

    job = _job_or_404(request, job_id, access.MIGRATE, "job.postcopy")
    try:
        migration_postcopy(job=job, user=request.user)
    except Forbidden:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, "Switching to post-copy: the VM now runs on the target while its memory follows.")
    return _back(request, f"/jobs/{job_id}/")
