"""JSON API of storage: pools and volumes (lists filtered like the pages), their operations as
jobs, uploads and downloads (the bytes themselves go to /api/transfers/<job>/, storage.consumers)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from core import access
from core.api import Pagination, validated
from core.errors import NotFound
from core.filters import LenientFilterBackend
from core.net import client_ip
from hosts.selectors import host_get
from jobs.api import job_for
from jobs.serializers import JobSerializer

from . import services
from .models import StoragePool, Volume
from .params import CopyParams
from .selectors import PoolFilterSet, VolumeFilterSet, pool_get, pool_list, volume_get, volume_users
from .serializers import PoolSerializer, VolumeSerializer

_ID = [OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)]


def _pool(request, pk, action: str = access.VIEW, what: str = "") -> StoragePool:
    pool = pool_get(pool_id=pk)
    access.require(request.user, action, pool, what=what)
    return pool


def _volume(request, pk, action: str = access.VIEW, what: str = "") -> Volume:
    volume = volume_get(volume_id=pk)
    access.require(request.user, action, volume, what=what)
    return volume


class PoolDefineSerializer(serializers.Serializer):
    host = serializers.IntegerField(help_text="id of the host")
    name = serializers.CharField(max_length=200)
    params = serializers.DictField(required=False, default=dict,
                                   help_text="type (dir|fs|netfs|logical), target_path, source_host, source_dir, "
                                             "source_device, source_name, source_format, build, start, autostart")  # fmt: skip


class ActionSerializer(serializers.Serializer):
    action = serializers.CharField(max_length=32)
    params = serializers.DictField(required=False, default=dict)


class VolumeCreateSerializer(serializers.Serializer):
    pool = serializers.IntegerField(help_text="id of the pool")
    name = serializers.CharField(max_length=200)
    params = serializers.DictField(required=False, default=dict,
                                   help_text="capacity (20G, 512M or bytes), format (qcow2|raw), backing_volume (id), "
                                             "preallocation (none|metadata|full)")  # fmt: skip


class CopySerializer(CopyParams):
    """Where to copy a volume: a pool (of any host), its name there, a bandwidth limit."""


class UploadSerializer(serializers.Serializer):
    pool = serializers.IntegerField(help_text="id of the pool")
    name = serializers.CharField(max_length=200, help_text="the volume's name")
    params = serializers.DictField(required=False, default=dict,
                                   help_text="size (bytes, required), format (auto|raw|qcow2|iso), sha256, overwrite")  # fmt: skip


TransferResponse = inline_serializer("Transfer", {
    "job": JobSerializer(),
    "url": serializers.CharField(help_text="where the bytes go (PATCH chunks, HEAD for the offset) or come from (GET)"),
    "token": serializers.CharField(help_text="send as X-Upload-Token with every chunk (shown once)"),
    "offset": serializers.IntegerField(help_text="where the next chunk goes"),
    "chunk_size": serializers.IntegerField(help_text="the largest chunk accepted, in bytes"),
})  # fmt: skip


def _transfer(transfer: services.Transfer) -> dict:
    return {"job": JobSerializer(transfer.job).data, "url": transfer.url, "token": transfer.token,
            "offset": transfer.offset, "chunk_size": transfer.chunk_size}  # fmt: skip


class PoolViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Storage pools of every host."""

    serializer_class = PoolSerializer
    filter_backends = [LenientFilterBackend]
    filterset_class = PoolFilterSet
    pagination_class = Pagination

    def get_queryset(self):
        return access.visible_on_hosts(self.request.user, pool_list()).order_by("host__name", "name", "id")

    @extend_schema(parameters=_ID, responses=PoolSerializer)
    def retrieve(self, request, pk=None):
        return Response(PoolSerializer(_pool(request, pk)).data)

    @extend_schema(request=PoolDefineSerializer, responses={202: JobSerializer})
    def create(self, request):
        data = validated(PoolDefineSerializer, request.data)
        host = host_get(host_id=data["host"])
        job = services.pool_define_request(host=host, name=data["name"], params=data["params"], user=request.user,
                                           ip=client_ip(request))  # fmt: skip
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=_ID, request=ActionSerializer, responses={202: JobSerializer},
                   description=f"Actions: {', '.join(services.POOL_ACTIONS)}.")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="actions")
    def act(self, request, pk=None):
        data = validated(ActionSerializer, request.data)
        job = services.pool_job_request(pool=_pool(request, pk), action=data["action"], user=request.user,
                                        ip=client_ip(request))  # fmt: skip
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class VolumeDetailSerializer(VolumeSerializer):
    used_by = serializers.SerializerMethodField(help_text="the VMs with a disk on it")

    class Meta(VolumeSerializer.Meta):
        fields = [*VolumeSerializer.Meta.fields, "used_by"]
        read_only_fields = fields

    def get_used_by(self, volume: Volume) -> list[dict]:
        return [{"uuid": str(vm.uuid), "name": vm.name} for vm in volume_users([volume]).get(volume.pk, [])]


class VolumeViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Volumes of every pool."""

    serializer_class = VolumeSerializer
    filter_backends = [LenientFilterBackend]
    filterset_class = VolumeFilterSet
    pagination_class = Pagination

    def get_queryset(self):
        qs = Volume.objects.select_related("pool", "pool__host").order_by("pool__host__name", "pool__name", "name")
        return access.visible_on_hosts(self.request.user, qs, field="pool__host_id")

    @extend_schema(parameters=_ID, responses=VolumeDetailSerializer)
    def retrieve(self, request, pk=None):
        return Response(VolumeDetailSerializer(_volume(request, pk)).data)

    @extend_schema(request=VolumeCreateSerializer, responses={202: JobSerializer})
    def create(self, request):
        data = validated(VolumeCreateSerializer, request.data)
        pool = _pool(request, data["pool"])
        job = services.volume_create_request(pool=pool, name=data["name"], params=data["params"], user=request.user,
                                             ip=client_ip(request))  # fmt: skip
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=_ID, request=ActionSerializer, responses={202: JobSerializer},
                   description=f"Actions: {', '.join(services.VOLUME_ACTIONS)}.")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="actions")
    def act(self, request, pk=None):
        data = validated(ActionSerializer, request.data)
        job = services.volume_job_request(volume=_volume(request, pk), action=data["action"], params=data["params"],
                                          user=request.user, ip=client_ip(request))  # fmt: skip
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=_ID, request=CopySerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def copy(self, request, pk=None):
        data = validated(CopySerializer, request.data)
        volume = _volume(request, pk)
        target = StoragePool.objects.select_related("host").filter(pk=data["target_pool"]).first()
        if target is None or not access.may(request.user, access.VIEW, target):
            raise NotFound(f"There is no storage pool with id {data['target_pool']}.", field="target_pool")
        job = services.volume_copy_request(volume=volume, target_pool=target, name=data["name"],
                                           bandwidth=data["bandwidth"], user=request.user, ip=client_ip(request))  # fmt: skip
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(parameters=_ID, request=None, responses={202: TransferResponse})
    @action(detail=True, methods=["post"])
    def download(self, request, pk=None):
        transfer = services.download_request(volume=_volume(request, pk), user=request.user, ip=client_ip(request))
        return Response(_transfer(transfer), status=status.HTTP_202_ACCEPTED)


class UploadView(APIView):
    """Start an upload to a pool: a job that waits for the file's chunks at the returned URL."""

    @extend_schema(request=UploadSerializer, responses={202: TransferResponse}, operation_id="uploads_create")
    def post(self, request):
        data = validated(UploadSerializer, request.data)
        transfer = services.upload_request(pool=_pool(request, data["pool"]), name=data["name"], params=data["params"],
                                           user=request.user, ip=client_ip(request))  # fmt: skip
        return Response(_transfer(transfer), status=status.HTTP_202_ACCEPTED)


class UploadResumeView(APIView):
    """A new token for an upload you started (after a reload): the chunks go on at the returned offset."""

    @extend_schema(parameters=[OpenApiParameter("job_id", OpenApiTypes.INT, OpenApiParameter.PATH)], request=None,
                   responses=TransferResponse, operation_id="uploads_resume")  # fmt: skip
    def post(self, request, job_id):
        transfer = services.transfer_resume(job=job_for(request, job_id), user=request.user)
        return Response(_transfer(transfer))
