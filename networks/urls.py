from django.urls import path

from . import views

app_name = "networks"
urlpatterns = [
    path("networks/", views.network_list_view, name="list"),
    path("networks/hosts/<int:host_id>/new/", views.network_new, name="new"),
    path("networks/<int:network_id>/", views.network_detail, name="detail"),
    path("networks/<int:network_id>/actions/<str:action>/", views.network_action, name="action"),
    path("networks/<int:network_id>/dhcp-hosts/", views.dhcp_host, name="dhcp-host"),
    path("vms/<uuid:uuid>/nics/network/", views.nic_network, name="nic-network"),
]
