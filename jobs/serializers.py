from rest_framework import serializers

from .models import Job, JobEvent


class JobSerializer(serializers.ModelSerializer):
    """A job as the API, job tables and pushed ``job.updated`` events show it."""

    kind_label = serializers.CharField(source="get_kind_display", read_only=True)
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    vm_uuid = serializers.UUIDField(read_only=True)
    target_host_name = serializers.SerializerMethodField()
    cancellable = serializers.BooleanField(read_only=True, help_text="whether it can be cancelled now")
    params = serializers.JSONField(source="shown_params", read_only=True, help_text="its options (secrets hidden)")

    class Meta:
        model = Job
        fields = [
            "id", "kind", "kind_label", "vm_uuid", "vm_name", "target_name", "host", "host_name", "target_host",
            "target_host_name", "params", "status", "status_label", "progress", "message", "error",
            "error_code", "result", "cancel_requested", "cancellable", "requested_by_name", "queued_at",
            "started_at", "finished_at", "worker", "attempts", "celery_task_id", "parent", "version",
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


# Pushed events serialise one row at a time, many times a second: DRF builds a serializer's
# fields on every instantiation, so the push path reuses one unbound instance.
_job_serializer = JobSerializer()


def job_data(job: Job) -> dict:
    """The job in the API's shape (the ``job.updated`` event body)."""
    return dict(_job_serializer.to_representation(job))
