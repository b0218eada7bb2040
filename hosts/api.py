"""JSON API for hosts: list, get, add, edit, remove, sync now."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from . import services
from .selectors import host_get, host_list
from .serializers import HostSerializer, HostWriteSerializer


class HostViewSet(viewsets.ViewSet):
    """Hosts of the fleet. Reads come from the database; add/edit check the URI by connecting."""

    serializer_class = HostSerializer

    @extend_schema(responses=HostSerializer(many=True))
    def list(self, request):
        return Response(HostSerializer(host_list(), many=True).data)

    @extend_schema(responses=HostSerializer)
    def retrieve(self, request, pk=None):
        return Response(HostSerializer(host_get(host_id=pk)).data)

    @extend_schema(request=HostWriteSerializer, responses={201: HostSerializer})
    def create(self, request):
        data = _valid(HostWriteSerializer, request.data)
        allow_offline = str(request.query_params.get("allow_offline", "")).lower() in ("1", "true", "yes")
        host = services.host_add(
            **{**data, "sasl_password": data.get("sasl_password") or ""}, allow_offline=allow_offline
        )
        return Response(HostSerializer(host_get(host_id=host.pk)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=HostWriteSerializer, responses=HostSerializer)
    def partial_update(self, request, pk=None):
        host = host_get(host_id=pk)
        if not isinstance(request.data, dict):
            from dashboard.errors import ServiceError

            raise ServiceError("Send a JSON object with the fields to change.")
        current = {
            "name": host.name,
            "uri": host.uri,
            "ssh_key_path": host.ssh_key_path,
            "sasl_username": host.sasl_username,
            "peer_uri": host.peer_uri,
            "migration_address": host.migration_address,
        }
        data = _valid(HostWriteSerializer, {**current, **request.data}, partial=True)
        services.host_update(host=host, **data)
        return Response(HostSerializer(host_get(host_id=host.pk)).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        services.host_remove(host=host_get(host_id=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=inline_serializer(
            "MaintenanceRequest", {"action": serializers.ChoiceField(choices=["enter", "leave"])}
        ),
        responses={202: None, 200: HostSerializer},
        description="enter: refuse new VMs and live-migrate every running VM away (a job); leave: back in service.",
    )
    @action(detail=True, methods=["post"])
    def maintenance(self, request, pk=None):
        from vms.serializers import JobSerializer

        from .maintenance import host_maintenance_enter, host_maintenance_leave

        host = host_get(host_id=pk)
        what = request.data.get("action") if isinstance(request.data, dict) else None
        if what == "enter":
            job = host_maintenance_enter(host=host, user=request.user, ip=request.META.get("REMOTE_ADDR"))
            return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
        if what == "leave":
            host_maintenance_leave(host=host)
            return Response(HostSerializer(host_get(host_id=pk)).data)
        from dashboard.errors import ServiceError

        raise ServiceError('action must be "enter" or "leave".', field="action")

    @extend_schema(request=None, responses={202: None})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        services.host_sync_request(host=host_get(host_id=pk))
        return Response({"status": "sync requested"}, status=status.HTTP_202_ACCEPTED)


def _valid(serializer_class, data, *, partial: bool = False) -> dict:
    if not isinstance(data, dict):
        from dashboard.errors import ServiceError

        raise ServiceError("Send a JSON object.")
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
