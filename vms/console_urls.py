"""Console URLs: the page and its ticket endpoint, and the API (mounted at the site root)."""

from django.urls import path, re_path

from . import console_api, console_views

app_name = "console"
UUID = r"(?P<uuid>[0-9a-fA-F-]{32,36})"

urlpatterns = [
    path("vms/<uuid:uuid>/console/", console_views.console_page, name="page"),
    path("vms/<uuid:uuid>/console/ticket/", console_views.console_ticket, name="ticket"),
    re_path(rf"^api/vms/{UUID}/console/$", console_api.ConsoleTicketView.as_view(), name="api-ticket"),
    re_path(rf"^api/vms/{UUID}/console/sessions/$", console_api.ConsoleSessionListView.as_view(), name="api-sessions"),
]
