"""JSON API for VMs: the fleet list (filter, sort, paginate), one VM, operations on one or many."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from core import access
from core.api import validated
from core.filters import LenientFilterBackend
from core.net import client_ip
from jobs.serializers import JobSerializer

from . import services
from .actions import ACTIONS
from .models import VM
from .selectors import LIST_FIELDS_EXCLUDED, VMFilterSet, vm_get
from .serializers import ActionRequestSerializer, BulkActionRequestSerializer, VMDetailSerializer, VMSerializer


def _vm(request, uuid, action: str = access.VIEW, what: str = ""):
    """The VM (404 JSON if there is none) if the caller may do ``action`` to it (403 JSON if not)."""
    vm = vm_get(uuid=uuid)
    access.require(request.user, action, vm, what=what)
    return vm


BulkResponse = inline_serializer(
    "BulkActionResponse",
    {
        "jobs": JobSerializer(many=True),
        "parent": serializers.IntegerField(allow_null=True, help_text="the job that follows them all (2 or more)"),
        "refused": serializers.ListField(child=serializers.DictField()),
    },
)


class VMPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class VMViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """VMs of the whole fleet, keyed by UUID."""

    lookup_field = "uuid"
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"
    serializer_class = VMSerializer
    filter_backends = [LenientFilterBackend]
    filterset_class = VMFilterSet
    pagination_class = VMPagination

    def get_queryset(self):
        return access.visible_vms(self.request.user, VM.objects.select_related("host").defer(*LIST_FIELDS_EXCLUDED))

    @extend_schema(responses=VMDetailSerializer)
    def retrieve(self, request, uuid=None):
        return Response(VMDetailSerializer(_vm(request, uuid)).data)

    @extend_schema(
        request=ActionRequestSerializer,
        responses={202: JobSerializer},
        description=f"Start an operation on the VM as a job. Actions: {', '.join(ACTIONS)}.",
    )
    @action(detail=True, methods=["post"], url_path="actions")
    def act(self, request, uuid=None):
        data = validated(ActionRequestSerializer, request.data)
        job = services.vm_job_request(vm=_vm(request, uuid), action=data["action"], params=data["params"],
                                      user=request.user, ip=client_ip(request))  # fmt: skip
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=BulkActionRequestSerializer, responses={202: BulkResponse}, operation_id="vms_bulk_actions")
    @action(detail=False, methods=["post"], url_path="actions")
    def bulk(self, request):
        data = validated(BulkActionRequestSerializer, request.data)
        # VMs the caller may not see are reported like VMs that do not exist: their names stay hidden.
        chosen = VM.objects.select_related("host").filter(uuid__in=data["vms"])
        found = {vm.uuid: vm for vm in access.visible_vms(request.user, chosen)}
        missing = [{"vm": str(u), "error": f"There is no VM with UUID {u}.", "code": "not_found"}
                   for u in data["vms"] if u not in found]  # fmt: skip
        result = services.vms_job_request_bulk(vms=list(found.values()), action=data["action"], params=data["params"],
                                               user=request.user, ip=client_ip(request))  # fmt: skip
        return Response(
            {"jobs": JobSerializer(result.jobs, many=True).data, "parent": result.parent.pk if result.parent else None,
             "refused": missing + result.refused},
            status=status.HTTP_202_ACCEPTED,
        )  # fmt: skip
