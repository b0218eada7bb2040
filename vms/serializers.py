from rest_framework import serializers

from .models import VM, Job, JobEvent


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
    """One VM with its domain XML and graphics facts. The graphics endpoint (port, listen address,
    socket) is left out, in the XML too: consoles go through tickets and the console proxy."""

    graphics_reach = serializers.CharField(read_only=True)
    xml = serializers.CharField(source="public_xml", read_only=True)

    class Meta(VMSerializer.Meta):
        fields = [*VMSerializer.Meta.fields, "graphics_password", "graphics_reach", "xml"]
        read_only_fields = fields


class JobSerializer(serializers.ModelSerializer):
    """A job as the API, job tables and pushed ``job.updated`` events show it."""

    kind_label = serializers.CharField(source="get_kind_display", read_only=True)
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    vm_uuid = serializers.UUIDField(read_only=True)
    target_host_name = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id", "kind", "kind_label", "vm_uuid", "vm_name", "host", "host_name", "target_host",
            "target_host_name", "params", "status", "status_label", "progress", "message", "error",
            "error_code", "result", "cancel_requested", "requested_by_name", "queued_at", "started_at",
            "finished_at", "worker", "attempts", "celery_task_id", "parent",
        ]  # fmt: skip
        read_only_fields = fields

    def get_target_host_name(self, job: Job) -> str:
        return job.target_host.name if job.target_host_id and job.target_host else ""


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["at", "status", "progress", "message"]
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    events = JobEventSerializer(many=True, read_only=True)

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "events"]
        read_only_fields = fields


class ActionRequestSerializer(serializers.Serializer):
    action = serializers.CharField(max_length=32)
    params = serializers.DictField(required=False, default=dict)


class BulkActionRequestSerializer(ActionRequestSerializer):
    vms = serializers.ListField(child=serializers.UUIDField(), min_length=1, max_length=1000)


# Pushed events serialise one row at a time, many times a second: DRF builds a serializer's
# fields on every instantiation, so the push path reuses one unbound instance per serializer.
_vm_serializer = VMSerializer()
_job_serializer = JobSerializer()


def vm_payload(vm: VM) -> dict:
    """The ``vm.updated`` event body: the same shape as the API's VM."""
    return dict(_vm_serializer.to_representation(vm))


def job_payload(job: Job) -> dict:
    """The ``job.updated`` event body: the same shape as the API's job."""
    return dict(_job_serializer.to_representation(job))
