from django.urls import path

from . import views

app_name = "vms"
urlpatterns = [
    path("<uuid:uuid>/", views.vm_detail, name="detail"),
]
