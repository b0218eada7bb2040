from rest_framework import serializers

from .models import GuestAddress, Lease, Network


class NetworkSerializer(serializers.ModelSerializer):
    """A network as the API, the network tables and pushed ``network.updated`` events show it."""

    host = serializers.IntegerField(source="host_id", read_only=True)
    host_name = serializers.CharField(source="host.name", read_only=True)
    mode_label = serializers.CharField(source="get_mode_display", read_only=True)
    subnets = serializers.ListField(child=serializers.CharField(), read_only=True)
    dhcp_ranges = serializers.ListField(child=serializers.CharField(), read_only=True)
    dhcp_hosts = serializers.ListField(child=serializers.DictField(), read_only=True,
                                       help_text="static DHCP entries: mac, ip, name, family")  # fmt: skip

    class Meta:
        model = Network
        fields = ["id", "host", "host_name", "name", "uuid", "active", "persistent", "autostart", "mode",
                  "mode_label", "forward_mode", "bridge", "forward_dev", "subnets", "dhcp_ranges", "dhcp_hosts",
                  "version"]  # fmt: skip
        read_only_fields = fields


class LeaseSerializer(serializers.ModelSerializer):
    class Meta:
        model = Lease
        fields = ["mac", "ip", "prefix", "family", "hostname", "client_id", "expires_at"]
        read_only_fields = fields


class GuestAddressSerializer(serializers.ModelSerializer):
    class Meta:
        model = GuestAddress
        fields = ["mac", "ip", "prefix", "family", "source"]
        read_only_fields = fields


_network_serializer = NetworkSerializer()


def network_data(network: Network) -> dict:
    return dict(_network_serializer.to_representation(network))
