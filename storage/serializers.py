from rest_framework import serializers

from .models import StoragePool, Volume


class PoolSerializer(serializers.ModelSerializer):
    """A pool as the API, the pool tables and pushed ``pool.updated`` events show it."""

    host = serializers.IntegerField(source="host_id", read_only=True)
    host_name = serializers.CharField(source="host.name", read_only=True)
    state_label = serializers.CharField(source="get_state_display", read_only=True)
    source = serializers.CharField(source="source_label", read_only=True)
    volume_count = serializers.SerializerMethodField()

    class Meta:
        model = StoragePool
        fields = [
            "id", "host", "host_name", "name", "uuid", "type", "state", "state_label", "persistent",
            "autostart", "capacity", "allocation", "available", "target_path", "source", "volume_count",
            "version",
        ]  # fmt: skip
        read_only_fields = fields

    def get_volume_count(self, pool: StoragePool) -> int:
        count = getattr(pool, "volume_count", None)
        return count if count is not None else pool.volumes.count()


class VolumeSerializer(serializers.ModelSerializer):
    """A volume as the API, the volume tables and pushed ``volume.updated`` events show it."""

    pool = serializers.IntegerField(source="pool_id", read_only=True)
    pool_name = serializers.CharField(source="pool.name", read_only=True)
    host = serializers.IntegerField(source="pool.host_id", read_only=True)
    left_by = serializers.IntegerField(source="left_by_id", read_only=True, allow_null=True,
                                       help_text="a failed job made it and could not remove it: a partial volume")  # fmt: skip

    class Meta:
        model = Volume
        fields = ["id", "pool", "pool_name", "host", "name", "path", "type", "format", "capacity", "allocation",
                  "backing_path", "left_by", "version"]  # fmt: skip
        read_only_fields = fields


_pool_serializer = PoolSerializer()
_volume_serializer = VolumeSerializer()


def pool_data(pool: StoragePool) -> dict:
    return dict(_pool_serializer.to_representation(pool))


def volume_data(volume: Volume) -> dict:
    return dict(_volume_serializer.to_representation(volume))
