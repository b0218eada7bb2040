from django.urls import path

from . import template_views as views

app_name = "templates"
urlpatterns = [
    path("templates/", views.template_list, name="list"),
    path("templates/<uuid:uuid>/deploy/", views.template_deploy, name="deploy"),
    path("vms/<uuid:uuid>/template/", views.vm_template, name="mark"),
]
