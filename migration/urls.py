"""Migration and maintenance URLs, mounted at the site root: they live under /vms/, /jobs/ and
/hosts/ (and the same under /api/), where users look for them."""

from django.urls import path, re_path

from . import api, views

app_name = "migration"
UUID = r"(?P<uuid>[0-9a-fA-F-]{32,36})"

urlpatterns = [
    path("vms/<uuid:uuid>/migrate/", views.vm_migrate, name="migrate"),
    path("vms/<uuid:uuid>/migrate/check/", views.vm_migrate_check, name="check"),
    path("jobs/<int:job_id>/postcopy/", views.job_postcopy, name="postcopy"),
    path("hosts/<int:host_id>/maintenance/<str:action>/", views.host_maintenance, name="maintenance"),
    re_path(rf"^api/vms/{UUID}/migration/targets/$", api.MigrationTargetsView.as_view(), name="api-targets"),
    re_path(rf"^api/vms/{UUID}/migration/preflight/$", api.MigrationPreflightView.as_view(), name="api-preflight"),
    re_path(rf"^api/vms/{UUID}/migrate/$", api.MigrateView.as_view(), name="api-migrate"),
    re_path(r"^api/jobs/(?P<job_id>[0-9]+)/postcopy/$", api.PostcopyView.as_view(), name="api-postcopy"),
    re_path(r"^api/hosts/(?P<host_id>[0-9]+)/maintenance/$", api.MaintenanceView.as_view(), name="api-maintenance"),
]
