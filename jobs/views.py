"""Job pages: the list (filtered, paginated), one job with its timeline and children, cancel."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from core import access
from core.errors import Forbidden, ServiceError
from core.filters import values
from core.pagination import paginate, query_without
from core.shortcuts import get_or_404, redirect_back
from hosts.selectors import host_choices

from . import engine, kinds
from .models import Job, JobStatus
from .selectors import STATUS_CHOICES, JobFilterSet, job_get


def _job_or_404(request, job_id, action: str = access.VIEW, what: str = ""):
    return get_or_404(request, lambda: job_get(job_id=job_id), action, what=what)


@login_required
@require_GET
def job_list_view(request):
    filterset = JobFilterSet(request.GET, queryset=access.visible_jobs(request.user, Job.objects.all()))
    page = paginate(filterset.qs.select_related("target_host").order_by("-queued_at", "-id"), request)
    context = {
        "page": page,
        "filters": values(filterset, host_id="host", vm_uuid="vm"),
        "statuses": STATUS_CHOICES,
        "kinds": kinds.choices(),
        "host_choices": host_choices(user=request.user),
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
    context = {"job": job, "events": job.events.all(), "children": children}
    if request.GET.get("fragment") == "children":
        return render(request, "jobs/_children.html", context)
    return render(request, "jobs/detail.html", context)


@login_required
@require_POST
def job_cancel(request, job_id):
    job = _job_or_404(request, job_id, access.CANCEL, "job.cancel")
    try:
        job = engine.job_cancel(job=job, user=request.user)
    except Forbidden:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect_back(request, f"/jobs/{job_id}/")
    if job.status == JobStatus.CANCELLED:
        messages.success(request, f"Job {job.pk} cancelled.")
    else:
        messages.info(request, f"Cancellation of job {job.pk} requested; it stops at the next safe point.")
    return redirect_back(request, f"/jobs/{job.pk}/")
