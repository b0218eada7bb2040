"""JSON API for hosts: list, get, add, edit, remove, sync now."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core import access
from core.api import validated

from . import services
from .selectors import STATUS_FILTERS, HostFilterSet, host_get, host_list
from .serializers import HostSerializer, HostWriteSerializer

_ID = [OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)]


@extend_schema_view(
    retrieve=extend_schema(parameters=_ID),
    partial_update=extend_schema(parameters=_ID),
    destroy=extend_schema(parameters=_ID),
    sync=extend_schema(parameters=_ID),
)
class HostViewSet(viewsets.ViewSet):
    """Hosts of the fleet. Reads come from the database; add/edit check the URI by connecting."""

    serializer_class = HostSerializer

    @extend_schema(responses=HostSerializer(many=True), parameters=[
        OpenApiParameter("q", OpenApiTypes.STR, description="name, URI or host name contains"),
        OpenApiParameter("status", OpenApiTypes.STR, enum=list(STATUS_FILTERS)),
    ])  # fmt: skip
    def list(self, request):
        hosts = HostFilterSet(request.query_params, queryset=access.visible_hosts(request.user, host_list())).qs
        return Response(HostSerializer(hosts, many=True).data)

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
