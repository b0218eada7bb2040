from django.urls import path

from . import views

app_name = "hosts"
urlpatterns = [
    path("", views.host_list_view, name="list"),
    path("add/", views.host_add, name="add"),
    path("<int:host_id>/", views.host_detail, name="detail"),
    path("<int:host_id>/edit/", views.host_edit, name="edit"),
    path("<int:host_id>/remove/", views.host_remove, name="remove"),
    path("<int:host_id>/sync/", views.host_sync, name="sync"),
]
