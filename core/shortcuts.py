"""What page views share: an object looked up by a selector, as a 404 or a 403 when it must be; a
job asked for from a form, its refusal shown where the user looks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.http import Http404

from core import access
from core.errors import NotFound

T = TypeVar("T")


def get_or_404(request, fetch: Callable[[], T], action: str = access.VIEW, *, what: str = "") -> T:
    """``fetch()``'s object (a selector call), if it exists (else 404) and the signed-in user may do
    ``action`` to it (else 403, recorded in the audit log as ``what``, by default "<kind>.<action>")."""
    try:
        obj = fetch()
    except NotFound as exc:
        raise Http404(exc.message) from None
    access.require(request.user, action, obj, what=what)
    return obj


def redirect_back(request, default: str):
    """Back to the page the form came from (its ``next`` field, if it is on this site), else ``default``."""
    from django.shortcuts import redirect
    from django.utils.http import url_has_allowed_host_and_scheme

    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(default)


def job_requested(request, job, what: str) -> None:
    from django.contrib import messages

    messages.success(request, f"{what} requested (job {job.pk}).")


def run_job_request(request, default: str, start: Callable[[], object], what: str):
    """Ask for a job (``start()``) from a form post and go back to the page it came from; a refusal
    (ServiceError) becomes an error message there, never an error page. Forbidden goes on to the 403."""
    from django.contrib import messages

    from core.errors import Forbidden, ServiceError

    try:
        job = start()
    except Forbidden:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        job_requested(request, job, what)
    return redirect_back(request, default)
