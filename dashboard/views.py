"""What the site answers outside any app: the health check for load balancers."""

from django.db import connection
from django.http import JsonResponse


def healthz(request):
    """Liveness for load balancers: the process answers and its database is reachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
