"""Models that moved to their own apps keep their data: a database at the schema of the release
before the move, with rows in it, migrated forward (jobs and console sessions were in vms)."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [
    ("vms", "0007_vm_observed_at"),
    ("hosts", "0003_permissions_encrypted_credentials"),
    ("jobs", None),
    ("console", None),
    ("storage", None),  # later than the move: not there yet
    ("networks", None),
    ("provisioning", None),
    ("snapshots", None),
]
VM_UUID = uuid.UUID("33333333-3333-4333-8333-333333333301")


def _migrate(targets):
    """Migrate to ``targets`` (other apps: their latest); the models as they were then."""
    executor = MigrationExecutor(connection)
    apps = {app for app, _ in targets}
    everything = [t for t in targets if t[1] is not None] + [n for n in _latest() if n[0] not in apps]
    executor.migrate(targets + [n for n in _latest() if n[0] not in apps])
    executor.loader.build_graph()
    return executor.loader.project_state(everything).apps


def _latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_jobs_and_console_sessions_move_out_of_vms_with_their_rows():
    old = _migrate(BEFORE)
    try:
        Host, VM = old.get_model("hosts", "Host"), old.get_model("vms", "VM")
        Job, JobEvent = old.get_model("vms", "Job"), old.get_model("vms", "JobEvent")
        Session = old.get_model("vms", "ConsoleSession")
        ContentType, Permission = old.get_model("contenttypes", "ContentType"), old.get_model("auth", "Permission")
        User, UserPermission = old.get_model("auth", "User"), old.get_model("guardian", "UserObjectPermission")
        host = Host.objects.create(name="old-host", uri="test:///default", state="connected")
        vm = VM.objects.create(uuid=VM_UUID, host=host, name="old-vm", state="running")
        done = Job.objects.create(kind="suspend", vm=vm, vm_uuid=VM_UUID, vm_name="old-vm", host=host,
                                  host_name="old-host", status="succeeded", message="suspended")  # fmt: skip
        JobEvent.objects.create(job=done, status="succeeded", message="suspended")
        active = Job.objects.create(kind="reboot", vm=vm, vm_uuid=VM_UUID, vm_name="old-vm", host=host,
                                    host_name="old-host", status="queued")  # fmt: skip
        evacuation = Job.objects.create(kind="maintenance", host=host, host_name="old-host", status="running")
        Session.objects.create(username="ann", vm=vm, vm_uuid=VM_UUID, vm_name="old-vm", host_name="old-host",
                               opened_at=timezone.now())  # fmt: skip
        # an object permission given on a job before the move (any permission: it must follow the model)
        job_type = ContentType.objects.get_or_create(app_label="vms", model="job")[0]
        view_job = Permission.objects.get_or_create(content_type=job_type, codename="view_job",
                                                    defaults={"name": "Can view job"})[0]  # fmt: skip
        ann = User.objects.create(username="ann")
        UserPermission.objects.create(user=ann, permission=view_job, content_type=job_type, object_pk=str(done.pk))

        _migrate(_latest())

        from django.contrib.contenttypes.models import ContentType as CT
        from guardian.models import UserObjectPermission

        from console.models import ConsoleSession
        from jobs.models import Job as NewJob

        CT.objects.clear_cache()
        moved = {j.kind: j for j in NewJob.objects.all()}
        assert set(moved) == {"suspend", "reboot", "maintenance"}
        assert moved["suspend"].message == "suspended" and moved["suspend"].events.count() == 1
        assert moved["reboot"].lock_key == f"vm:{VM_UUID}" and moved["suspend"].lock_key == f"vm:{VM_UUID}"
        assert moved["maintenance"].lock_key == f"host:{host.pk}"
        assert moved["reboot"].version == 1 and moved["reboot"].get_kind_display() == "Reboot"
        assert ConsoleSession.objects.get().username == "ann"
        assert CT.objects.get_for_model(NewJob).app_label == "jobs"
        perm = UserObjectPermission.objects.get(object_pk=str(done.pk))
        assert perm.content_type.app_label == "jobs" and perm.permission.codename == "view_job"
        # the rule moved with the rows: the queued reboot still holds the VM
        with pytest.raises(IntegrityError), transaction.atomic():
            NewJob.objects.create(kind="start", lock_key=f"vm:{VM_UUID}", vm_uuid=VM_UUID)
        assert {j.pk for j in NewJob.objects.active()} == {active.pk, evacuation.pk}
    finally:
        _migrate(_latest())
