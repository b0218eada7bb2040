"""JSON API of the audit log (read-only)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.pagination import LimitOffsetPagination

from .models import AuditEvent, Outcome
from .selectors import AuditFilter, audit_list, shows_addresses


class AuditEventSerializer(serializers.ModelSerializer):
    """One audit event; ``ip`` is null for readers who are not administrators."""

    host = serializers.IntegerField(source="host_ref", allow_null=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id", "at", "username", "ip", "action", "outcome", "message", "target_type", "target_id",
            "target_name", "host", "host_name", "vm_uuid", "vm_name", "details",
        ]  # fmt: skip
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("show_ip"):
            data["ip"] = None
        return data


class AuditPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit log: who did what, to which host or VM, when, from where, and how it ended."""

    serializer_class = AuditEventSerializer
    pagination_class = AuditPagination

    def get_queryset(self):
        return audit_list(user=self.request.user, filters=AuditFilter.from_params(self.request.query_params))

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "show_ip": shows_addresses(self.request.user)}

    @extend_schema(
        parameters=[
            OpenApiParameter("user", OpenApiTypes.STR, description="user name"),
            OpenApiParameter("action", OpenApiTypes.STR, description="e.g. vm or vm.reboot"),
            OpenApiParameter("host", OpenApiTypes.INT),
            OpenApiParameter("vm", OpenApiTypes.UUID),
            OpenApiParameter("outcome", OpenApiTypes.STR, enum=Outcome.values),
            OpenApiParameter("since", OpenApiTypes.DATE),
            OpenApiParameter("until", OpenApiTypes.DATE),
            OpenApiParameter("q", OpenApiTypes.STR),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)
