"""A refused request (core.errors.Forbidden from access.require) becomes a 403 that says why:
a page for browsers, JSON for scripts. The API answers for itself (core.api)."""

from django.http import JsonResponse
from django.shortcuts import render

from core.errors import Forbidden


def wants_json(request) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith("/api/") or ("application/json" in accept and "text/html" not in accept)


def forbidden_response(request, message: str):
    if wants_json(request):
        return JsonResponse({"error": message, "code": "forbidden"}, status=403)
    return render(request, "403.html", {"message": message}, status=403)


class ForbiddenMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, Forbidden):
            return forbidden_response(request, exception.message)
        return None


def login_required_json(view):
    """Like login_required, for views that answer JSON: 401 JSON instead of a redirect."""
    from functools import wraps

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse(
                {"error": "You are not signed in; reload the page to sign in.", "code": "not_signed_in"}, status=401
            )
        return view(request, *args, **kwargs)

    return wrapped


def permission_denied(request, exception=None):
    """handler403: Django's own refusals (PermissionDenied) get the same page."""
    message = str(exception) if exception and str(exception) else "You do not have permission to see this page."
    return forbidden_response(request, message)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: a form or call without a valid CSRF token (or from another site)."""
    message = (
        "This request was refused: it did not carry this site's CSRF token (the page may be too old, "
        "or the request came from another site). Reload the page and try again."
    )
    if wants_json(request):
        return JsonResponse({"error": message, "code": "csrf"}, status=403)
    return render(request, "403.html", {"message": message}, status=403)
