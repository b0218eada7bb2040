"""JSON API of the audit log (read-only)."""

from rest_framework import serializers, viewsets
from rest_framework.pagination import LimitOffsetPagination

from core.filters import LenientFilterBackend

from .models import AuditEvent
from .selectors import AuditFilterSet, audit_readable, shows_addresses


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

    filter_backends = [LenientFilterBackend]
    filterset_class = AuditFilterSet

    def get_queryset(self):
        return audit_readable(user=self.request.user)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "show_ip": shows_addresses(self.request.user)}
