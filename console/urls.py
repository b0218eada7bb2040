"""Console URLs: the page and its ticket endpoint, and the API (mounted at the site root)."""

from django.urls import path, re_path

from . import api, views

app_name = "console"
UUID = r"(?P<uuid>[0-9a-fA-F-]{32,36})"

urlpatterns = [
    path("vms/<uuid:uuid>/console/", views.console_page, name="page"),
    path("vms/<uuid:uuid>/console/ticket/", views.console_ticket, name="ticket"),
    re_path(rf"^api/vms/{UUID}/console/$", api.ConsoleTicketView.as_view(), name="api-ticket"),
    re_path(rf"^api/vms/{UUID}/console/sessions/$", api.ConsoleSessionListView.as_view(), name="api-sessions"),
]
