from django.urls import path

from . import views

app_name = "provisioning"
urlpatterns = [
    path("vms/new/", views.vm_new, name="new"),
    path("vms/new/xml/", views.vm_define, name="define"),
    path("vms/<uuid:uuid>/xml/", views.vm_xml, name="xml"),
    path("vms/<uuid:uuid>/hardware/", views.vm_hardware, name="hardware"),
    path("vms/<uuid:uuid>/clone/", views.vm_clone, name="clone"),
    path("vms/<uuid:uuid>/hardware/<str:change>/", views.vm_change, name="change"),
    path("account/ssh-keys/", views.ssh_keys, name="ssh-keys"),
]
