from django.urls import path

from . import views

app_name = "vms"
urlpatterns = [
    path("bulk/", views.vm_bulk_action, name="bulk"),
    path("<uuid:uuid>/", views.vm_detail, name="detail"),
    path("<uuid:uuid>/delete/", views.vm_delete, name="delete"),
    path("<uuid:uuid>/actions/<str:kind>/", views.vm_action, name="action"),
]
