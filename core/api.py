"""API plumbing: service errors become JSON with the right status, never a 500 page."""

import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ServiceError

log = logging.getLogger(__name__)


class Pagination(LimitOffsetPagination):
    """The API's lists: 100 rows unless ``limit`` says otherwise, at most 1000."""

    default_limit = 100
    max_limit = 1000


def validated(serializer_class, data, *, partial: bool = False) -> dict:
    """A request body checked by ``serializer_class``: its validated data, or a 400 saying what is wrong."""
    if not isinstance(data, dict):
        raise ServiceError("Send a JSON object.")
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        return Response({"error": "The request body is too large.", "code": "too_large"}, status=413)
    if isinstance(exc, SuspiciousOperation):  # e.g. more form fields than DATA_UPLOAD_MAX_NUMBER_FIELDS
        return Response({"error": f"The request is malformed: {exc}", "code": "malformed"}, status=400)
    if isinstance(exc, ServiceError):
        body = {"error": exc.message, "code": exc.code}
        if exc.field:
            body["field"] = exc.field
        return Response(body, status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is not None:
        data = response.data
        if isinstance(data, dict) and "detail" in data and len(data) == 1:
            response.data = {"error": str(data["detail"]), "code": getattr(data["detail"], "code", "error")}
        elif isinstance(data, (dict, list)):
            response.data = {
                "error": "The request is not valid; see the field errors.",
                "fields": data,
                "code": "invalid",
            }
        return response
    log.error("unhandled API error", exc_info=exc)
    return Response(
        {"error": "Internal error; it has been logged. Try again, or report it if it persists.", "code": "internal"},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


@csrf_exempt  # it changes nothing, whatever the method
def not_found(request, path=""):
    """Any /api/ URL that names no endpoint: JSON, like every other API answer (never an HTML page)."""
    hint = ""
    if not request.path.endswith("/"):
        try:
            resolve(request.path + "/")
            hint = f" API URLs end with a slash: {request.path}/"
        except Resolver404:
            pass
    return JsonResponse(
        {"error": f"There is no API endpoint at {request.path[:200]}.{hint}", "code": "not_found"}, status=404
    )
