"""The console page of a VM and the endpoint that issues its single-use console tickets."""

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from core import access
from core.errors import ServiceError
from core.shortcuts import get_or_404
from vms.actions import console_refusal
from vms.selectors import vm_get

from .services import console_sessions, console_ticket_issue

RECENT_SESSIONS = 15


@login_required
@require_GET
def console_page(request, uuid):
    """The VM's screen (noVNC), its toolbar and its recent console sessions."""
    vm = get_or_404(request, lambda: vm_get(uuid=uuid), access.CONSOLE, what="console.page")
    context = {
        "vm": vm,
        "refusal": console_refusal(vm),
        "sessions": console_sessions(vm_uuid=vm.uuid).select_related(None)[:RECENT_SESSIONS],
    }
    if request.GET.get("fragment") == "sessions":
        return render(request, "console/_console_sessions.html", context)
    return render(request, "console/console.html", context)


@require_POST
def console_ticket(request, uuid):
    """Issue a ticket as JSON: {token, url, expires_in} or {error, code} (never a redirect or a 500)."""
    if not request.user.is_authenticated:
        return JsonResponse(
            {"error": "You are not signed in; reload the page to sign in.", "code": "not_signed_in"}, status=401
        )
    try:
        vm = vm_get(uuid=uuid)
        ticket = console_ticket_issue(
            user=request.user, vm=vm, secure=request.is_secure(), http_host=request.get_host()
        )
    except ServiceError as exc:
        return JsonResponse({"error": exc.message, "code": exc.code}, status=exc.status_code)
    return JsonResponse({"token": ticket.token, "url": ticket.url, "expires_in": ticket.expires_in}, status=201)
