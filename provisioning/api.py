"""JSON API of provisioning: create a VM (on a host or the best one), define one from XML, the OS
presets, a host's capabilities, a VM's definition (read and save) and its hardware changes."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core import access
from core.api import validated
from core.errors import ServiceError
from core.net import client_ip
from hosts.connections import host_connection
from hosts.selectors import host_get
from jobs.serializers import JobSerializer
from virt import VirtError, osinfo
from virt import hardware as hw
from vms.selectors import vm_get

from . import params as P
from . import services, templates
from .models import HostCapabilities
from .selectors import template_rows

_UUID = [OpenApiParameter("uuid", OpenApiTypes.UUID, OpenApiParameter.PATH)]


class CreateRequest(P.CreateParams):
    host = serializers.IntegerField(required=False, allow_null=True, default=None,
                                    help_text="id of the host; null: the best host (most free memory)")  # fmt: skip


class DefineRequest(P.DefineXmlParams):
    host = serializers.IntegerField(help_text="id of the host")


class PresetSerializer(serializers.Serializer):
    id = serializers.CharField()
    short_id = serializers.CharField()
    name = serializers.CharField()
    family = serializers.CharField()
    eol = serializers.BooleanField()
    disk_bus = serializers.CharField()
    nic_model = serializers.CharField()
    min_memory_mib = serializers.IntegerField()
    recommended_memory_mib = serializers.IntegerField()
    recommended_storage_bytes = serializers.IntegerField()
    firmware = serializers.ListField(child=serializers.CharField())


def _created(job, why: str = "") -> Response:
    return Response({**JobSerializer(job).data, "placement": why}, status=status.HTTP_202_ACCEPTED)


class VMCreateView(APIView):
    """Create a VM like virt-install: ISO, imported disk, cloud image with cloud-init, or empty."""

    @extend_schema(request=CreateRequest, operation_id="vms_create_new",
                   responses={202: inline_serializer("CreatedJob", {"id": serializers.IntegerField(),
                                                                     "placement": serializers.CharField()})})  # fmt: skip
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ServiceError("Send a JSON object.")
        data = dict(request.data)
        host_id = data.pop("host", None)
        host = host_get(host_id=host_id) if host_id not in (None, "") else None
        if host is not None:
            access.require(request.user, access.VIEW, host)
        job, why = services.vm_create_request(host=host, params=data, user=request.user, ip=client_ip(request))
        return _created(job, why)


class VMDefineView(APIView):
    """Define a VM from a domain XML (persistent), or create it transient."""

    @extend_schema(request=DefineRequest, responses={202: JobSerializer}, operation_id="vms_define_xml")
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ServiceError("Send a JSON object.")
        data = dict(request.data)
        host = host_get(host_id=data.pop("host", None))
        access.require(request.user, access.VIEW, host)
        return _created(services.vm_define_request(host=host, params=data, user=request.user, ip=client_ip(request)))


class PresetsView(APIView):
    """OS presets from osinfo-db (what virt-install uses): search by name or short id."""

    @extend_schema(parameters=[OpenApiParameter("search", OpenApiTypes.STR), OpenApiParameter("eol", OpenApiTypes.BOOL)],
                   responses=PresetSerializer(many=True), operation_id="os_presets")  # fmt: skip
    def get(self, request):
        try:
            db = osinfo.database()
        except VirtError as exc:
            raise ServiceError(exc.message, code="no_osinfo") from None
        text = request.query_params.get("search", "").strip()[:100]
        eol = request.query_params.get("eol") in ("1", "true", "yes")
        found = db.search(text, limit=100, include_eol=eol) if text else db.presets(include_eol=eol)
        return Response(PresetSerializer(found, many=True).data)


class HostCapabilitiesView(APIView):
    """What a host can run: machine types, firmware, disk buses... (read when it connects)."""

    @extend_schema(parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)],
                   responses=OpenApiTypes.OBJECT, operation_id="hosts_capabilities")  # fmt: skip
    def get(self, request, pk):
        host = host_get(host_id=pk)
        access.require(request.user, access.VIEW, host)
        row = HostCapabilities.objects.filter(host=host).first()
        return Response({"reported": bool(row and row.reported), "read_at": row.read_at if row else None,
                         "capabilities": row.data if row else {}})  # fmt: skip


class VMDefinitionView(APIView):
    """A VM's definition (its VNC password and console address hidden), and saving an edited one."""

    @extend_schema(parameters=_UUID, responses=inline_serializer("Definition", {"xml": serializers.CharField()}),
                   operation_id="vms_definition_read")  # fmt: skip
    def get(self, request, uuid):
        vm = vm_get(uuid=uuid)
        access.require(request.user, access.CONFIGURE, vm, what="vm.edit_xml")
        if vm.host.state != "connected":
            raise ServiceError(f"Its host {vm.host.name} is {vm.host.get_state_display().lower()}.", code="host_down")
        try:
            return Response({"xml": hw.editable_xml(host_connection(vm.host), str(vm.uuid))})
        except VirtError as exc:
            raise ServiceError(f"The definition cannot be read now: {exc.message}", code="host_error") from None

    @extend_schema(parameters=_UUID, request=P.EditXmlParams, responses={202: JobSerializer},
                   operation_id="vms_definition_save")  # fmt: skip
    def put(self, request, uuid):
        vm = vm_get(uuid=uuid)
        data = validated(P.EditXmlParams, request.data)
        return _created(services.vm_change_request(vm=vm, change="xml", params=data, user=request.user,
                                                   ip=client_ip(request)))  # fmt: skip


class VMHardwareView(APIView):
    """A hardware change of a VM: vcpus, memory, disk_attach, disk_detach, nic_attach, nic_detach,
    media, boot_order, rename, describe (each a job; live where possible)."""

    @extend_schema(parameters=[*_UUID, OpenApiParameter("change", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                        enum=[c for c in services.CHANGE_KINDS if c != "xml"])],
                   request=OpenApiTypes.OBJECT, responses={202: JobSerializer}, operation_id="vms_hardware_change")  # fmt: skip
    def post(self, request, uuid, change):
        vm = vm_get(uuid=uuid)
        if change == "xml":
            raise ServiceError("Save a definition with PUT /api/vms/<uuid>/definition/.", field="change")
        return _created(services.vm_change_request(vm=vm, change=change, params=request.data, user=request.user,
                                                   ip=client_ip(request)))  # fmt: skip


# --- templates ----------------------------------------------------------------------------------------------
class TemplateSerializer(serializers.Serializer):
    uuid = serializers.UUIDField(source="vm.uuid")
    name = serializers.CharField(source="vm.name")
    host = serializers.IntegerField(source="vm.host_id")
    host_name = serializers.CharField(source="vm.host.name")
    os = serializers.CharField()
    generation = serializers.CharField()
    disks = serializers.ListField(child=serializers.DictField())
    size = serializers.IntegerField(help_text="bytes its disks hold")
    capacity = serializers.IntegerField(help_text="bytes its disks offer the guest")
    copies = serializers.ListField(child=serializers.CharField(), help_text="hosts holding a copy of its disks")


class VMTemplateView(APIView):
    """Mark a VM as a template (POST) or make it a regular VM again (DELETE); each a job."""

    @extend_schema(parameters=_UUID, request=None, responses={202: JobSerializer}, operation_id="vms_template_mark")
    def post(self, request, uuid):
        vm = vm_get(uuid=uuid)
        return _created(templates.template_mark_request(vm=vm, user=request.user, ip=client_ip(request)))

    @extend_schema(parameters=_UUID, responses={202: JobSerializer}, operation_id="vms_template_unmark")
    def delete(self, request, uuid):
        vm = vm_get(uuid=uuid)
        return _created(templates.template_unmark_request(vm=vm, user=request.user, ip=client_ip(request)))


class TemplateListView(APIView):
    """The templates you may see: host, OS, disks, size and the hosts holding copies of them."""

    @extend_schema(responses=TemplateSerializer(many=True), operation_id="templates_list")
    def get(self, request):
        return Response(TemplateSerializer(template_rows(user=request.user), many=True).data)


class TemplateDeployView(APIView):
    """N VMs from a template: a name pattern, a host or spread, cloud-init, linked or full, start."""

    @extend_schema(parameters=_UUID, request=templates.DeployParams, responses={202: JobSerializer},
                   operation_id="templates_deploy")  # fmt: skip
    def post(self, request, uuid):
        if not isinstance(request.data, dict):
            raise ServiceError("Send a JSON object.")
        vm = vm_get(uuid=uuid)
        access.require(request.user, access.VIEW, vm)
        return _created(templates.template_deploy_request(template=vm, params=dict(request.data), user=request.user,
                                                          ip=client_ip(request)))  # fmt: skip


class VMCloneView(APIView):
    """Clone a VM like virt-clone: full copies or linked overlays, on its host or another (a job)."""

    @extend_schema(parameters=_UUID, request=P.CloneParams, responses={202: JobSerializer}, operation_id="vms_clone")
    def post(self, request, uuid):
        vm = vm_get(uuid=uuid)
        if not isinstance(request.data, dict):
            raise ServiceError("Send a JSON object.")
        return _created(services.vm_clone_request(vm=vm, params=dict(request.data), user=request.user,
                                                  ip=client_ip(request)))  # fmt: skip
