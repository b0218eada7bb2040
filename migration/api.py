"""JSON API of migration and maintenance: a VM's targets, pre-flight, migrate; post-copy; a host's
maintenance. Mounted under the VM, job and host URLs (migration/urls.py)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core import access
from core.api import validated
from core.errors import NotFound, ServiceError
from core.net import client_ip
from hosts.selectors import host_get, visible_host
from hosts.serializers import HostSerializer
from jobs.api import job_for
from jobs.serializers import JobSerializer
from vms.selectors import vm_get

from . import services


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


TargetSerializer = inline_serializer(
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
_UUID = [OpenApiParameter("uuid", OpenApiTypes.UUID, OpenApiParameter.PATH)]
_JOB = [OpenApiParameter("job_id", OpenApiTypes.INT, OpenApiParameter.PATH)]
_HOST = [OpenApiParameter("host_id", OpenApiTypes.INT, OpenApiParameter.PATH)]


def _vm(request, uuid):
    vm = vm_get(uuid=uuid)
    access.require(request.user, access.MIGRATE, vm, what="vm.migrate")
    return vm


def _target(request, pk):
    """The target host; one the caller may not see is answered like one that does not exist."""
    host = visible_host(user=request.user, host_id=pk)
    if host is None:
        raise NotFound(f"There is no host with id {pk}.", field="target")
    return host


def _checks(checks) -> list[dict]:
    return [{"name": c.name, "ok": c.ok, "message": c.message} for c in checks]


class MigrationTargetsView(APIView):
    """The hosts this VM could migrate to, and why not where it cannot."""

    @extend_schema(parameters=_UUID, responses=TargetSerializer, operation_id="vms_migration_targets")
    def get(self, request, uuid):
        targets = services.migration_targets(vm=_vm(request, uuid), user=request.user)
        return Response([{"host": t.host.pk, "name": t.host.name, "status": t.host.status,
                          "free_memory_bytes": t.host.free_memory_bytes, "cpu_model": t.host.cpu_model,
                          "running_vms": t.running, "eligible": t.eligible, "reason": t.reason}
                         for t in targets])  # fmt: skip


class MigrationPreflightView(APIView):
    """Run the pre-flight checks of a migration to one target with these options."""

    @extend_schema(parameters=_UUID, request=MigrationRequestSerializer, responses=PreflightResultSerializer,
                   operation_id="vms_migration_preflight")  # fmt: skip
    def post(self, request, uuid):
        vm = _vm(request, uuid)
        data = validated(MigrationRequestSerializer, request.data)
        checks = services.migration_preflight(
            vm=vm, target=_target(request, data["target"]),
            options=services.migration_options(vm=vm, params=data["options"]),
        )  # fmt: skip
        return Response({"ok": all(c.ok for c in checks), "checks": _checks(checks)})


class MigrateView(APIView):
    """Migrate the VM to another host: a job on the migration queue (refused with the failed checks)."""

    @extend_schema(parameters=_UUID, request=MigrationRequestSerializer, responses={202: JobSerializer},
                   operation_id="vms_migrate")  # fmt: skip
    def post(self, request, uuid):
        data = validated(MigrationRequestSerializer, request.data)
        try:
            job = services.migration_request(vm=_vm(request, uuid), target=_target(request, data["target"]),
                                             params=data["options"], user=request.user, ip=client_ip(request))  # fmt: skip
        except services.PreflightFailed as exc:
            return Response({"error": exc.message, "code": exc.code, "checks": _checks(exc.checks)},
                            status=status.HTTP_400_BAD_REQUEST)  # fmt: skip
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class PostcopyView(APIView):
    """Switch a running migration to post-copy (it must have been started with post-copy allowed)."""

    @extend_schema(parameters=_JOB, request=None, responses=JobSerializer, operation_id="jobs_postcopy")
    def post(self, request, job_id):
        job = services.migration_postcopy(job=job_for(request, job_id), user=request.user)
        return Response(JobSerializer(job).data)


class MaintenanceView(APIView):
    """enter: refuse new VMs and live-migrate every running VM away (a job); leave: back in service."""

    @extend_schema(
        parameters=_HOST,
        request=inline_serializer(
            "MaintenanceRequest", {"action": serializers.ChoiceField(choices=["enter", "leave"])}
        ),
        responses={202: JobSerializer, 200: HostSerializer},
        operation_id="hosts_maintenance",
    )
    def post(self, request, host_id):
        what = request.data.get("action") if isinstance(request.data, dict) else None
        host = host_get(host_id=host_id)
        access.require(request.user, access.MAINTAIN, host,
                       what=f"host.maintenance.{what if what in ('enter', 'leave') else 'enter'}")  # fmt: skip
        if what == "enter":
            job = services.host_maintenance_enter(host=host, user=request.user, ip=client_ip(request))
            return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
        if what == "leave":
            services.host_maintenance_leave(host=host, user=request.user)
            return Response(HostSerializer(host_get(host_id=host_id)).data)
        raise ServiceError('action must be "enter" or "leave".', field="action")
