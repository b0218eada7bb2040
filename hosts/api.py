"""JSON API for hosts: list, get, add, edit, remove, sync now."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core import access
from core.api import validated
from core.net import client_ip

from . import services
from .selectors import host_get, host_list
from .serializers import HostSerializer, HostWriteSerializer

_ID = [OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)]


@extend_schema_view(
    retrieve=extend_schema(parameters=_ID),
    partial_update=extend_schema(parameters=_ID),
    destroy=extend_schema(parameters=_ID),
    maintenance=extend_schema(parameters=_ID),
    sync=extend_schema(parameters=_ID),
)
class HostViewSet(viewsets.ViewSet):
    """Hosts of the fleet. Reads come from the database; add/edit check the URI by connecting."""

    serializer_class = HostSerializer

    @extend_schema(responses=HostSerializer(many=True))
    def list(self, request):
        return Response(HostSerializer(access.visible_hosts(request.user, host_list()), many=True).data)

    @extend_schema(responses=HostSerializer)
    def retrieve(self, request, pk=None):
        return Response(HostSerializer(_host(request, pk)).data)

    @extend_schema(request=HostWriteSerializer, responses={201: HostSerializer})
    def create(self, request):
        access.require(request.user, access.MANAGE, what="host.add")
        data = validated(HostWriteSerializer, request.data)
        allow_offline = str(request.query_params.get("allow_offline", "")).lower() in ("1", "true", "yes")
        host = services.host_add(
            **{**data, "sasl_password": data.get("sasl_password") or ""},
            allow_offline=allow_offline,
            user=request.user,
        )
        return Response(HostSerializer(host_get(host_id=host.pk)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=HostWriteSerializer, responses=HostSerializer)
    def partial_update(self, request, pk=None):
        host = _host(request, pk, access.MANAGE, "host.update")
        current = {
            "name": host.name,
            "uri": host.uri,
            "ssh_key_path": host.ssh_key_path,
            "sasl_username": host.sasl_username,
            "peer_uri": host.peer_uri,
            "migration_address": host.migration_address,
        }
        if not isinstance(request.data, dict):
            from core.errors import ServiceError

            raise ServiceError("Send a JSON object.")
        data = validated(HostWriteSerializer, {**current, **request.data}, partial=True)
        services.host_update(host=host, **data, user=request.user)
        return Response(HostSerializer(host_get(host_id=host.pk)).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        services.host_remove(host=_host(request, pk, access.MANAGE, "host.remove"), user=request.user)
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

        what = request.data.get("action") if isinstance(request.data, dict) else None
        host = _host(
            request, pk, access.MAINTAIN, f"host.maintenance.{what if what in ('enter', 'leave') else 'enter'}"
        )
        if what == "enter":
            job = host_maintenance_enter(host=host, user=request.user, ip=client_ip(request))
            return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
        if what == "leave":
            host_maintenance_leave(host=host, user=request.user)
            return Response(HostSerializer(host_get(host_id=pk)).data)
        from core.errors import ServiceError

        raise ServiceError('action must be "enter" or "leave".', field="action")

    @extend_schema(request=None, responses={202: None})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        services.host_sync_request(host=_host(request, pk, access.MANAGE, "host.sync"), user=request.user)
        return Response({"status": "sync requested"}, status=status.HTTP_202_ACCEPTED)


def _host(request, pk, action: str = access.VIEW, what: str = ""):
    """The host (404 JSON if there is none) if the caller may do ``action`` to it (403 JSON if not)."""
    host = host_get(host_id=pk)
    access.require(request.user, action, host, what=what)
    return host
