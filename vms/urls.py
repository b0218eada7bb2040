from django.urls import path

from . import views

app_name = "vms"
urlpatterns = [
    path("bulk/", views.vm_bulk_action, name="bulk"),
    path("<uuid:uuid>/", views.vm_detail, name="detail"),
    path("<uuid:uuid>/delete/", views.vm_delete, name="delete"),
    path("<uuid:uuid>/actions/<str:kind>/", views.vm_action, name="action"),
    path("<uuid:uuid>/migrate/", views.vm_migrate, name="migrate"),
    path("<uuid:uuid>/migrate/check/", views.vm_migrate_check, name="migrate-check"),
]

jobs_patterns = (
    [
        path("", views.job_list_view, name="list"),
        path("<int:job_id>/", views.job_detail, name="detail"),
        path("<int:job_id>/cancel/", views.job_cancel, name="cancel"),
        path("<int:job_id>/postcopy/", views.job_postcopy, name="postcopy"),
    ],
    "jobs",
)
