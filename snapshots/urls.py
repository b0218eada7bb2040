from django.urls import path

from . import api, views

app_name = "snapshots"
urlpatterns = [
    path("vms/<uuid:uuid>/snapshots/new/", views.snapshot_create, name="create"),
    path("vms/<uuid:uuid>/snapshots/<str:snapshot>/revert/", views.snapshot_revert, name="revert"),
    path("vms/<uuid:uuid>/snapshots/<str:snapshot>/delete/", views.snapshot_delete, name="delete"),
    path("api/vms/<uuid:uuid>/snapshots/", api.VMSnapshotsView.as_view(), name="api-list"),
    path("api/vms/<uuid:uuid>/snapshots/<str:snapshot>/", api.VMSnapshotView.as_view(), name="api-detail"),
    path("api/vms/<uuid:uuid>/snapshots/<str:snapshot>/revert/", api.VMSnapshotRevertView.as_view(), name="api-revert"),
]
