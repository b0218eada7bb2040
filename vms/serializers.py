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
            "max_vcpus", "memory_kib", "max_memory_kib", "persistent", "autostart", "managed_save", "template",
            "arch", "graphics_type", "gone", "gone_at", "first_seen", "last_seen", "state_changed",
            "version",
        ]  # fmt: skip
        read_only_fields = fields


class VMDetailSerializer(VMSerializer):
    """One VM with its domain XML and graphics facts. The graphics endpoint (port, listen address,
    socket) is left out, in the XML too: consoles go through tickets and the console proxy."""

    graphics_reach = serializers.CharField(read_only=True)
    xml = serializers.CharField(source="public_xml", read_only=True)

    class Meta(VMSerializer.Meta):
        fields = [*VMSerializer.Meta.fields, "graphics_password", "graphics_reach", "xml"]
        read_only_fields = fields


class ActionRequestSerializer(serializers.Serializer):
    action = serializers.CharField(max_length=32)
    params = serializers.DictField(required=False, default=dict)


class BulkActionRequestSerializer(ActionRequestSerializer):
    vms = serializers.ListField(child=serializers.UUIDField(), min_length=1, max_length=1000)


# Pushed events serialise one row at a time, many times a second: DRF builds a serializer's
# fields on every instantiation, so the push path reuses one unbound instance.
_vm_serializer = VMSerializer()


def vm_data(vm: VM) -> dict:
    """The VM in the API's shape (the ``vm.updated`` event body)."""
    return dict(_vm_serializer.to_representation(vm))
