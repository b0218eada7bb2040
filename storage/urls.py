from django.urls import path, re_path

from . import api, views

app_name = "storage"
urlpatterns = [
    path("storage/", views.pool_list_view, name="list"),
    path("storage/hosts/<int:host_id>/pools/new/", views.pool_new, name="pool-new"),
    path("storage/pools/<int:pool_id>/", views.pool_detail, name="pool"),
    path("storage/pools/<int:pool_id>/actions/<str:action>/", views.pool_action, name="pool-action"),
    path("storage/pools/<int:pool_id>/volumes/new/", views.volume_create, name="volume-create"),
    path("storage/volumes/<int:volume_id>/actions/<str:action>/", views.volume_action, name="volume-action"),
    re_path(r"^api/uploads/$", api.UploadView.as_view(), name="api-upload"),
    re_path(r"^api/uploads/(?P<job_id>[0-9]+)/resume/$", api.UploadResumeView.as_view(), name="api-upload-resume"),
]
