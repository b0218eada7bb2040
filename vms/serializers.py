from rest_framework import serializers

from .models import VM


class VMSerializer(serializers.ModelSerializer):
    """A VM as the fleet table, the API list and pushed ``vm.updated`` events show it."""

    host = serializers.IntegerField(source="host_id", read_only=True)
    host_name = serializers.CharField(source="host.name", read_only=True)
    state_label = serializers.CharField(source="get_state_display", read_only=True)
    gone = serializers.BooleanField(source="is_gone", read_only=True)

    class Meta:
        model = VM
        fields = [
            "uuid", "name", "host", "host_name", "state", "state_label", "state_reason", "vcpus",
            "max_vcpus", "memory_kib", "max_memory_kib", "persistent", "autostart", "managed_save",
            "arch", "graphics_type", "gone", "gone_at", "first_seen", "last_seen", "state_changed",
            "version",
        ]  # fmt: skip
        read_only_fields = fields


class VMDetailSerializer(VMSerializer):
    """One VM with its full domain XML and graphics facts."""

    class Meta(VMSerializer.Meta):
        fields = [
            *VMSerializer.Meta.fields,
            "graphics_listen", "graphics_port", "graphics_socket", "graphics_password", "xml",
        ]  # fmt: skip
        read_only_fields = fields
