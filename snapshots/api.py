"""JSON API of snapshots: a VM's snapshot tree, and taking, reverting to and deleting snapshots
(each a job: 202 with the job)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core import access
from core.errors import NotFound, ServiceError
from core.net import client_ip
from jobs.serializers import JobSerializer
from vms.selectors import vm_get

from . import params as P
from .models import Snapshot
from .selectors import tree_data
from .services import snapshot_request

_UUID = OpenApiParameter("uuid", OpenApiTypes.UUID, OpenApiParameter.PATH)
_NAME = OpenApiParameter("snapshot", OpenApiTypes.STR, OpenApiParameter.PATH)


def _accepted(job) -> Response:
    return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


def _body(request) -> dict:
    if request.data in (None, "") or (hasattr(request.data, "keys") and not request.data):
        return {}
    if not isinstance(request.data, dict):
        raise ServiceError("Send a JSON object.")
    return dict(request.data)


def _existing(vm, name: str) -> str:
    """The snapshot's name when the VM has it (404 otherwise; a malformed name is a 400)."""
    try:
        name = P.check_name(name)
    except Exception as exc:  # a ValidationError: say what a name may hold
        detail = getattr(exc, "detail", [str(exc)])
        raise ServiceError(str(detail[0]), field="snapshot") from None
    if not Snapshot.objects.filter(vm=vm, name=name).exists():
        raise NotFound(f"{vm.name} has no snapshot named {name}.")
    return name


class VMSnapshotsView(APIView):
    """GET: the VM's snapshots as a tree (parents before children, with depth); POST: take one."""

    @extend_schema(parameters=[_UUID], responses=OpenApiTypes.OBJECT, operation_id="vms_snapshots_list")
    def get(self, request, uuid):
        vm = vm_get(uuid=uuid)
        access.require(request.user, access.VIEW, vm)
        return Response({"vm": str(vm.uuid), "snapshots": tree_data(vm=vm)})

    @extend_schema(parameters=[_UUID], request=P.CreateParams, responses={202: JobSerializer},
                   operation_id="vms_snapshots_create")  # fmt: skip
    def post(self, request, uuid):
        vm = vm_get(uuid=uuid)
        return _accepted(snapshot_request(vm=vm, action="create", params=_body(request), user=request.user,
                                          ip=client_ip(request)))  # fmt: skip


class VMSnapshotView(APIView):
    """DELETE: delete the snapshot (``?children=1``: and every snapshot below it)."""

    @extend_schema(parameters=[_UUID, _NAME, OpenApiParameter("children", OpenApiTypes.BOOL)],
                   responses={202: JobSerializer}, operation_id="vms_snapshots_delete")  # fmt: skip
    def delete(self, request, uuid, snapshot):
        vm = vm_get(uuid=uuid)
        access.require(request.user, access.CONFIGURE, vm, what="snapshot.delete")
        name = _existing(vm, snapshot)
        children = request.query_params.get("children", "")
        return _accepted(snapshot_request(vm=vm, action="delete", params={"name": name, "children": children},
                                          user=request.user, ip=client_ip(request)))  # fmt: skip


class VMSnapshotRevertView(APIView):
    """POST: revert the VM to the snapshot; body {"after": "running"|"paused"|"shutoff"|"", "force": false}."""

    @extend_schema(parameters=[_UUID, _NAME], request=P.RevertParams, responses={202: JobSerializer},
                   operation_id="vms_snapshots_revert")  # fmt: skip
    def post(self, request, uuid, snapshot):
        vm = vm_get(uuid=uuid)
        access.require(request.user, access.CONFIGURE, vm, what="snapshot.revert")
        name = _existing(vm, snapshot)
        body = {k: v for k, v in _body(request).items() if k != "name"}
        return _accepted(snapshot_request(vm=vm, action="revert", params={**body, "name": name}, user=request.user,
                                          ip=client_ip(request)))  # fmt: skip
