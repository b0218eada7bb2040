"""JSON API for VMs: the fleet list (filter, sort, paginate) and one VM."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from core import access
from core.api import validated
from core.net import client_ip

from . import jobs
from .models import VM, JobKind, JobStatus, VMState
from .selectors import SORTS, VMFilter, sort_key, vm_get, vm_list
from .selectors_jobs import JobFilter, job_get, job_list
from .serializers import (
    ActionRequestSerializer,
    BulkActionRequestSerializer,
    JobDetailSerializer,
    JobSerializer,
    VMDetailSerializer,
    VMSerializer,
)


def _vm(request, uuid, action: str = access.VIEW, what: str = ""):
    """The VM (404 JSON if there is none) if the caller may do ``action`` to it (403 JSON if not)."""
    vm = vm_get(uuid=uuid)
    access.require(request.user, action, vm, what=what)
    return vm


def _job(request, pk, action: str = access.VIEW, what: str = ""):
    job = job_get(job_id=pk)
    access.require(request.user, action, job, what=what)
    return job


BulkResponse = inline_serializer(
    "BulkActionResponse",
    {
        "jobs": JobSerializer(many=True),
        "refused": serializers.ListField(child=serializers.DictField()),
    },
)


class VMPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class VMViewSet(viewsets.ViewSet):  # the migration actions are added below (VMMigrationMixin)
    """VMs of the whole fleet, keyed by UUID."""

    lookup_field = "uuid"
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"
    serializer_class = VMSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("q", OpenApiTypes.STR, description="Name contains, or UUID prefix"),
            OpenApiParameter("host", OpenApiTypes.INT, description="Only VMs of this host id"),
            OpenApiParameter("state", OpenApiTypes.STR, enum=VMState.values),
            OpenApiParameter("gone", OpenApiTypes.BOOL, description="Include VMs no longer present"),
            OpenApiParameter("sort", OpenApiTypes.STR, enum=[*SORTS, *(f"-{k}" for k in SORTS)]),
            OpenApiParameter("limit", OpenApiTypes.INT),
            OpenApiParameter("offset", OpenApiTypes.INT),
        ],
        responses=VMSerializer(many=True),
    )
    def list(self, request):
        qs = access.visible_vms(
            request.user,
            vm_list(
                filters=VMFilter.from_params(request.query_params), sort=sort_key(request.query_params.get("sort"))
            ),
        )
        paginator = VMPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(VMSerializer(page, many=True).data)

    @extend_schema(responses=VMDetailSerializer)
    def retrieve(self, request, uuid=None):
        return Response(VMDetailSerializer(_vm(request, uuid)).data)

    @extend_schema(
        request=ActionRequestSerializer,
        responses={202: JobSerializer},
        description=f"Start an operation on the VM as a job. Actions: {', '.join(k for k in JobKind.values if k != 'migrate')}.",
    )
    @action(detail=True, methods=["post"], url_path="actions")
    def act(self, request, uuid=None):
        data = validated(ActionRequestSerializer, request.data)
        job = jobs.job_request(
            vm=_vm(request, uuid),
            kind=data["action"],
            params=data["params"],
            user=request.user,
            ip=client_ip(request),
        )
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=BulkActionRequestSerializer, responses={202: BulkResponse}, operation_id="vms_bulk_actions")
    @action(detail=False, methods=["post"], url_path="actions")
    def bulk(self, request):
        data = validated(BulkActionRequestSerializer, request.data)
        # VMs the caller may not see are reported like VMs that do not exist: their names stay hidden.
        chosen = VM.objects.select_related("host").filter(uuid__in=data["vms"])
        found = {vm.uuid: vm for vm in access.visible_vms(request.user, chosen)}
        missing = [
            {"vm": str(u), "error": f"There is no VM with UUID {u}.", "code": "not_found"}
            for u in data["vms"]
            if u not in found
        ]
        result = jobs.jobs_request_bulk(
            vms=list(found.values()),
            kind=data["action"],
            params=data["params"],
            user=request.user,
            ip=client_ip(request),
        )
        return Response(
            {"jobs": JobSerializer(result.jobs, many=True).data, "refused": missing + result.refused},
            status=status.HTTP_202_ACCEPTED,
        )


class MigrationRequestSerializer(serializers.Serializer):
    target = serializers.IntegerField(help_text="id of the target host")
    options = serializers.DictField(
        required=False,
        default=dict,
        help_text="live, copy_storage (''|all|inc), bandwidth_mibs, max_downtime_ms, auto_converge, compressed, postcopy",
    )


class CheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    message = serializers.CharField()


class PreflightResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checks = CheckSerializer(many=True)


def _target(request, pk):
    """The target host; one the caller may not see is answered like one that does not exist."""
    from core.errors import NotFound
    from hosts.models import Host

    host = access.visible_hosts(request.user, Host.objects.filter(pk=pk)).first()
    if host is None:
        raise NotFound(f"There is no host with id {pk}.", field="target")
    return host


def _checks(checks) -> list[dict]:
    return [{"name": c.name, "ok": c.ok, "message": c.message} for c in checks]


class VMMigrationMixin:
    @extend_schema(
        responses=inline_serializer(
            "MigrationTarget",
            {
                "host": serializers.IntegerField(),
                "name": serializers.CharField(),
                "status": serializers.CharField(),
                "free_memory_bytes": serializers.IntegerField(),
                "cpu_model": serializers.CharField(),
                "running_vms": serializers.IntegerField(),
                "eligible": serializers.BooleanField(),
                "reason": serializers.CharField(),
            },
            many=True,
        )
    )
    @action(detail=True, methods=["get"], url_path="migration/targets")
    def migration_targets(self, request, uuid=None):
        from .migration import migration_targets

        return Response(
            [
                {
                    "host": t.host.pk,
                    "name": t.host.name,
                    "status": t.host.status,
                    "free_memory_bytes": t.host.free_memory_bytes,
                    "cpu_model": t.host.cpu_model,
                    "running_vms": t.running,
                    "eligible": t.eligible,
                    "reason": t.reason,
                }
                for t in migration_targets(vm=_vm(request, uuid, access.MIGRATE, "vm.migrate"), user=request.user)
            ]
        )

    @extend_schema(request=MigrationRequestSerializer, responses=PreflightResultSerializer)
    @action(detail=True, methods=["post"], url_path="migration/preflight")
    def migration_preflight(self, request, uuid=None):
        from .migration import migration_options, migration_preflight

        vm = _vm(request, uuid, access.MIGRATE, "vm.migrate")
        data = validated(MigrationRequestSerializer, request.data)
        checks = migration_preflight(
            vm=vm, target=_target(request, data["target"]), options=migration_options(vm=vm, params=data["options"])
        )
        return Response({"ok": all(c.ok for c in checks), "checks": _checks(checks)})

    @extend_schema(request=MigrationRequestSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"], url_path="migrate")
    def migrate(self, request, uuid=None):
        from .migration import PreflightFailed, migration_request

        data = validated(MigrationRequestSerializer, request.data)
        try:
            job = migration_request(
                vm=_vm(request, uuid, access.MIGRATE, "vm.migrate"),
                target=_target(request, data["target"]),
                params=data["options"],
                user=request.user,
                ip=client_ip(request),
            )
        except PreflightFailed as exc:
            return Response(
                {"error": exc.message, "code": exc.code, "checks": _checks(exc.checks)},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    retrieve=extend_schema(parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)]),
    cancel=extend_schema(parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)]),
    postcopy=extend_schema(parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)]),
)
class JobViewSet(viewsets.ViewSet):
    """Jobs: every operation, who asked, and how it ended."""

    serializer_class = JobSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=["active", *JobStatus.values]),
            OpenApiParameter("kind", OpenApiTypes.STR, enum=JobKind.values),
            OpenApiParameter("vm", OpenApiTypes.UUID),
            OpenApiParameter("host", OpenApiTypes.INT),
            OpenApiParameter("q", OpenApiTypes.STR),
            OpenApiParameter("limit", OpenApiTypes.INT),
            OpenApiParameter("offset", OpenApiTypes.INT),
        ],
        responses=JobSerializer(many=True),
    )
    def list(self, request):
        paginator = VMPagination()
        page = paginator.paginate_queryset(
            access.visible_jobs(request.user, job_list(filters=JobFilter.from_params(request.query_params))),
            request,
            view=self,
        )
        return paginator.get_paginated_response(JobSerializer(page, many=True).data)

    @extend_schema(responses=JobDetailSerializer)
    def retrieve(self, request, pk=None):
        return Response(JobDetailSerializer(_job(request, pk)).data)

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = jobs.job_cancel(job=_job(request, pk), user=request.user)
        return Response(JobSerializer(job).data)

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def postcopy(self, request, pk=None):
        from .migration import migration_postcopy

        return Response(JobSerializer(migration_postcopy(job=_job(request, pk), user=request.user)).data)


class VMViewSetWithMigration(VMMigrationMixin, VMViewSet):
    """VMs of the whole fleet, keyed by UUID; operations, migration."""
