"""JSON API for VMs: the fleet list (filter, sort, paginate) and one VM."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from .models import VMState
from .selectors import SORTS, VMFilter, sort_key, vm_get, vm_list
from .serializers import VMDetailSerializer, VMSerializer


class VMPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class VMViewSet(viewsets.ViewSet):
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
        qs = vm_list(
            filters=VMFilter.from_params(request.query_params), sort=sort_key(request.query_params.get("sort"))
        )
        paginator = VMPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(VMSerializer(page, many=True).data)

    @extend_schema(responses=VMDetailSerializer)
    def retrieve(self, request, uuid=None):
        return Response(VMDetailSerializer(vm_get(uuid=uuid)).data)
