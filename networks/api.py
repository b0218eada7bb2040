"""JSON API of networks: networks (lists filtered like the pages) with their leases and the VMs on
them, their operations as jobs, static DHCP entries, and moving a VM's NIC to another network."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from core import access
from core.api import Pagination, validated
from core.filters import LenientFilterBackend
from core.net import client_ip
from hosts.selectors import host_get
from jobs.serializers import JobSerializer
from vms.selectors import vm_get

from . import services
from .models import Network
from .params import DhcpHostParams, NicNetworkParams
from .selectors import NetworkFilterSet, network_get, network_list, vm_nics, vms_on
from .serializers import GuestAddressSerializer, LeaseSerializer, NetworkSerializer

_ID = [OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)]


def _network(request, pk, action: str = access.VIEW, what: str = "") -> Network:
    network = network_get(network_id=pk)
    access.require(request.user, action, network, what=what)
    return network


class NetworkDefineSerializer(serializers.Serializer):
    host = serializers.IntegerField(help_text="id of the host")
    name = serializers.CharField(max_length=50, required=False, allow_blank=True, default="",
                                 help_text="empty with mode xml: the XML's own")  # fmt: skip
    params = serializers.DictField(required=False, default=dict,
                                   help_text="mode (nat|route|open|isolated|bridge|macvtap|xml), ipv4 "
                                             "(192.168.100.1/24), dhcp, dhcp_start, dhcp_end, ipv6, dhcp6, bridge, "
                                             "forward_dev, macvtap_mode, domain, mtu, xml, start, autostart")  # fmt: skip


class ActionSerializer(serializers.Serializer):
    action = serializers.CharField(max_length=32)
    params = serializers.DictField(required=False, default=dict, help_text="stop, delete: force (administrators)")


class NetworkDetailSerializer(NetworkSerializer):
    leases = serializers.SerializerMethodField(help_text="DHCP leases dnsmasq handed out")
    vms = serializers.SerializerMethodField(help_text="the VMs with a NIC on it")

    class Meta(NetworkSerializer.Meta):
        fields = [*NetworkSerializer.Meta.fields, "leases", "vms"]
        read_only_fields = fields

    def get_leases(self, network: Network) -> list[dict]:
        return LeaseSerializer(network.leases.order_by("ip"), many=True).data

    def get_vms(self, network: Network) -> list[dict]:
        return [{"uuid": str(vm.uuid), "name": vm.name, "state": vm.state} for vm in vms_on(network)]


class NetworkViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Virtual networks of every host."""

    serializer_class = NetworkSerializer
    filter_backends = [LenientFilterBackend]
    filterset_class = NetworkFilterSet
    pagination_class = Pagination

    def get_queryset(self):
        return access.visible_on_hosts(self.request.user, network_list()).order_by("host__name", "name", "id")

    @extend_schema(parameters=_ID, responses=NetworkDetailSerializer)
    def retrieve(self, request, pk=None):
        return Response(NetworkDetailSerializer(_network(request, pk)).data)

    @extend_schema(request=NetworkDefineSerializer, responses={202: JobSerializer})
    def create(self, request):
        data = validated(NetworkDefineSerializer, request.data)
        host = host_get(host_id=data["host"])
        job = services.network_define_request(host=host, name=data["name"], params=data["params"], user=request.user,
                                              ip=client_ip(request))  # fmt: skip
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=_ID, request=ActionSerializer, responses={202: JobSerializer},
                   description=f"Actions: {', '.join(services.NETWORK_ACTIONS)}.")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="actions")
    def act(self, request, pk=None):
        data = validated(ActionSerializer, request.data)
        job = services.network_job_request(network=_network(request, pk), action=data["action"],
                                           params=data["params"], user=request.user, ip=client_ip(request))  # fmt: skip
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=_ID, request=DhcpHostParams, responses={202: JobSerializer},
                   description="command add, modify or delete a static DHCP entry (live).")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="dhcp-hosts")
    def dhcp_hosts(self, request, pk=None):
        network = _network(request, pk)
        job = services.dhcp_host_request(network=network, params=request.data, user=request.user,
                                         ip=client_ip(request))  # fmt: skip
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class NicSerializer(serializers.Serializer):
    mac = serializers.CharField()
    type = serializers.CharField()
    network = serializers.CharField()
    bridge = serializers.CharField()
    device = serializers.CharField()
    model = serializers.CharField()
    link = serializers.CharField()
    target = serializers.CharField()
    addresses = serializers.ListField(child=serializers.DictField(),
                                      help_text="ip, prefix, family, source (lease, arp, agent)")  # fmt: skip


class VMNicsView(APIView):
    """A VM's NICs with the addresses its guest has (GET), or one moved to another network (POST)."""

    @extend_schema(parameters=[OpenApiParameter("uuid", OpenApiTypes.UUID, OpenApiParameter.PATH)],
                   responses=NicSerializer(many=True), operation_id="vms_nics_list")  # fmt: skip
    def get(self, request, uuid):
        vm = vm_get(uuid=uuid)
        access.require(request.user, access.VIEW, vm)
        nics = [{**{k: nic.get(k, "") for k in NicSerializer().fields if k != "addresses"},
                 "addresses": [{k: a[k] for k in ("ip", "prefix", "family", "source")} for a in nic["addresses"]]}
                for nic in vm_nics(vm)]  # fmt: skip
        return Response(nics)

    @extend_schema(parameters=[OpenApiParameter("uuid", OpenApiTypes.UUID, OpenApiParameter.PATH)],
                   request=NicNetworkParams, responses={202: JobSerializer}, operation_id="vms_nics_move")  # fmt: skip
    def post(self, request, uuid):
        vm = vm_get(uuid=uuid)
        data = validated(NicNetworkParams, request.data)
        job = services.nic_network_request(vm=vm, mac=data["mac"], network=data["network"], user=request.user,
                                           ip=client_ip(request))  # fmt: skip
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


__all__ = ["GuestAddressSerializer", "NetworkViewSet", "VMNicsView"]
