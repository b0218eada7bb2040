from rest_framework import serializers

from .models import Host


class HostSerializer(serializers.ModelSerializer):
    """A host as the API, the hosts table and pushed ``host.updated`` events show it.

    Credentials are never shown back: only whether they are set.
    """

    status = serializers.CharField(read_only=True)
    has_ssh_key = serializers.SerializerMethodField()
    has_sasl_password = serializers.SerializerMethodField()
    vm_count = serializers.IntegerField(read_only=True, required=False)
    running_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Host
        fields = [
            "id", "name", "uri", "status", "state", "maintenance", "last_error", "last_seen",
            "last_sync", "state_changed", "hostname", "host_uuid", "arch", "cpu_model", "cpu_vendor",
            "cpus", "cpu_mhz", "memory_bytes", "free_memory_bytes", "hypervisor_type",
            "hypervisor_version", "libvirt_version", "sasl_username", "has_ssh_key",
            "has_sasl_password", "peer_uri", "migration_address", "vm_count", "running_count", "version",
        ]  # fmt: skip
        read_only_fields = fields

    def get_has_ssh_key(self, host: Host) -> bool:
        return bool(host.ssh_key_path)

    def get_has_sasl_password(self, host: Host) -> bool:
        return bool(host.sasl_password)


class HostWriteSerializer(serializers.Serializer):
    """Input for adding or editing a host (validated again by the host services)."""

    name = serializers.CharField(max_length=100)
    uri = serializers.CharField(max_length=1024)
    ssh_key_path = serializers.CharField(max_length=1024, required=False, allow_blank=True, default="")
    sasl_username = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    sasl_password = serializers.CharField(
        max_length=1024, required=False, allow_blank=True, write_only=True, default=None, allow_null=True
    )
    peer_uri = serializers.CharField(max_length=1024, required=False, allow_blank=True, default="")
    migration_address = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
