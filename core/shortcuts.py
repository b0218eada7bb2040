"""What page views share: an object looked up by a selector, as a 404 or a 403 when it must be."""

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
