"""Every operation as a job against the libvirt test driver, Celery in eager mode."""

import pytest

from core.errors import Conflict, ServiceError
from jobs import engine
from jobs.models import Job, JobStatus
from vms.models import VM
from vms.services import vm_job_request, vms_job_request_bulk

WEB1 = "11111111-1111-4111-8111-111111111101"  # running
DB1 = "11111111-1111-4111-8111-111111111102"  # shut off
BATCH1 = "11111111-1111-4111-8111-111111111103"  # paused


@pytest.fixture
def run(on_commit, admin_user):
    """Request a job the way a user does, let the (eager) worker run it, return it finished."""

    def request(uuid, kind, **params):
        with on_commit():
            job = vm_job_request(
                vm=VM.objects.get(uuid=uuid), action=kind, params=params, user=admin_user, ip="10.1.2.3"
            )
        job.refresh_from_db()
        return job

    return request


def vm(uuid):
    return VM.objects.get(uuid=uuid)


@pytest.mark.parametrize(
    ("uuid", "kind", "state", "message"),
    [
        (DB1, "start", "running", "started"),
        (WEB1, "shutdown", "shutoff", "powered off"),
        (WEB1, "force_off", "shutoff", "powered off"),
        (WEB1, "suspend", "paused", "suspended"),
        (BATCH1, "resume", "running", "resumed"),
        (WEB1, "reboot", "running", "reboot requested"),
        (WEB1, "reset", "running", "reset"),
    ],
)
def test_operations_change_the_vm_and_the_job_says_so(host_a, run, uuid, kind, state, message):
    job = run(uuid, kind)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert message in job.message and job.progress == 100
    assert vm(uuid).state == state  # the row was re-read from libvirt by the worker
    assert job.requested_by_name == "root" and str(job.requested_from) == "10.1.2.3"
    assert job.started_at and job.finished_at and job.worker
    assert [e.status for e in job.events.all()] == ["queued", "running", "succeeded"]


def test_save_then_start_restores_the_saved_state(host_a, run):
    job = run(WEB1, "save")
    assert job.status == "succeeded" and vm(WEB1).state == "shutoff" and vm(WEB1).managed_save
    job = run(WEB1, "start")
    assert job.status == "succeeded" and "restored from its saved state" in job.message
    assert vm(WEB1).state == "running" and not vm(WEB1).managed_save


def test_autostart_on_and_off(host_a, run):
    assert run(WEB1, "autostart_on").status == "succeeded" and vm(WEB1).autostart
    with pytest.raises(ServiceError, match="autostart is already on"):
        run(WEB1, "autostart_on")
    assert run(WEB1, "autostart_off").status == "succeeded" and not vm(WEB1).autostart


def test_delete_a_stopped_vm_keeps_its_row_and_history(host_a, run):
    job = run(DB1, "delete")
    assert job.status == "succeeded" and job.message.startswith("deleted")
    row = vm(DB1)
    assert row.is_gone and row.jobs.count() == 1


def test_delete_with_storage_removes_its_volume(add_host, run, raw_libvirt):
    host = add_host("storage", "host-storage.xml")
    job = run("11111111-1111-4111-8111-111111111104", "delete", remove_storage=True)
    assert job.status == "succeeded", job.error
    assert job.result["removed"] == ["/var/lib/images/data-1.qcow2"]
    assert raw_libvirt(host).storagePoolLookupByName("images").listVolumes() == []


def test_delete_of_a_running_vm_is_refused_unless_forced(host_a, run):
    with pytest.raises(ServiceError, match="it is running; shut it down first"):
        run(WEB1, "delete")
    assert not Job.objects.exists()
    job = run(WEB1, "delete", force=True)
    assert job.status == "succeeded" and vm(WEB1).is_gone


@pytest.mark.parametrize(
    ("uuid", "kind", "says"),
    [
        (DB1, "suspend", "Cannot suspend db-1: not possible while the VM is shut off"),
        (WEB1, "start", "Cannot start web-1: it is already running"),
        (WEB1, "resume", "Cannot resume web-1: it is already running"),
        (DB1, "shutdown", "Cannot shut down db-1: it is already shut off"),
        (DB1, "reboot", "Cannot reboot db-1: not possible while the VM is shut off"),
        (WEB1, "fly", "Unknown action 'fly'"),
    ],
)
def test_operations_in_the_wrong_state_are_refused_and_create_nothing(host_a, run, uuid, kind, says):
    with pytest.raises(ServiceError) as exc:
        run(uuid, kind)
    assert says in exc.value.message
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("kind", "params", "says"),
    [
        ("shutdown", {"timeout": "soon"}, "timeout must be a whole number"),
        ("shutdown", {"timeout": 99999}, "between 1 and 3600"),
        ("suspend", {"now": True}, "Unknown option(s) for suspend: now; it takes none"),
        ("delete", {"remove_storage": "maybe"}, "remove_storage must be true or false"),
    ],
)
def test_bad_options_are_refused(host_a, run, kind, params, says):
    with pytest.raises(ServiceError) as exc:
        run(WEB1, kind, **params)
    assert says in exc.value.message


def test_a_second_job_on_a_busy_vm_is_refused(host_a, admin_user):
    first = vm_job_request(vm=vm(WEB1), action="suspend", user=admin_user)  # not run: stays queued
    with pytest.raises(Conflict) as exc:
        vm_job_request(vm=vm(WEB1), action="reboot", user=admin_user)
    assert exc.value.message.startswith("VM web-1 is busy with suspend (job")
    assert Job.objects.count() == 1 and first.status == "queued"


def test_the_database_enforces_one_active_job_per_vm(host_a):
    from django.db import IntegrityError, transaction

    lock = f"vm:{WEB1}"  # what the lifecycle kinds lock (jobs.kinds.Subject)
    Job.objects.create(kind="suspend", lock_key=lock, vm=vm(WEB1), vm_uuid=WEB1, vm_name="web-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(kind="reboot", lock_key=lock, vm=vm(WEB1), vm_uuid=WEB1, vm_name="web-1")


def test_a_vm_already_in_the_target_state_at_run_time_succeeds_without_acting(
    host_a, admin_user, raw_libvirt, on_commit
):
    job = vm_job_request(vm=vm(WEB1), action="suspend", user=admin_user)
    raw_libvirt(host_a).lookupByUUIDString(WEB1).suspend()  # someone else got there first
    engine.job_run(job.pk, worker="w1")
    job.refresh_from_db()
    assert job.status == "succeeded" and "already paused" in job.message and job.result == {"already": True}


def test_transient_failures_are_retried_then_succeed(host_a, admin_user, settings, monkeypatch):
    from hosts import connections
    from virt import HostUnreachable

    settings.VIRTFLEET = {**settings.VIRTFLEET, "JOB_RETRY_BACKOFF": 0.01}
    real = connections.host_connection
    failures = iter([HostUnreachable("Cannot recv data: Connection reset by peer")] * 2)

    def flaky(host):
        error = next(failures, None)
        if error:
            raise error
        return real(host)

    monkeypatch.setattr("jobs.engine.host_connection", flaky)
    job = vm_job_request(vm=vm(WEB1), action="suspend", user=admin_user)
    engine.job_run(job.pk, worker="w1")
    job.refresh_from_db()
    assert job.status == "succeeded"
    retries = [e.message for e in job.events.all() if "retrying" in e.message]
    assert len(retries) == 2 and "attempt 2 of 4" in retries[0]


def test_retries_are_bounded(host_a, admin_user, settings, monkeypatch):
    from virt import HostUnreachable

    settings.VIRTFLEET = {**settings.VIRTFLEET, "JOB_RETRY_BACKOFF": 0.01, "JOB_RETRIES": 2}

    def down(host):
        raise HostUnreachable("unable to connect to server at '10.0.0.9:16509': No route to host")

    monkeypatch.setattr("jobs.engine.host_connection", down)
    job = vm_job_request(vm=vm(WEB1), action="suspend", user=admin_user)
    engine.job_run(job.pk, worker="w1")
    job.refresh_from_db()
    assert job.status == "failed" and "No route to host" in job.error and job.error_code == "HostUnreachable"


def test_a_permanent_libvirt_error_fails_the_job_with_libvirts_message(host_a, admin_user, raw_libvirt):
    job = vm_job_request(vm=vm(BATCH1), action="resume", user=admin_user)
    raw_libvirt(host_a).lookupByUUIDString(BATCH1).destroy()  # now shut off: resume is invalid
    engine.job_run(job.pk, worker="w1")
    job.refresh_from_db()
    assert job.status == "failed" and "resume batch-1" in job.error and "not paused" in job.error


def test_shutdown_that_the_guest_ignores_times_out_and_offers_force_off(host_a, admin_user, admin_client, monkeypatch):
    monkeypatch.setattr("virt.connection.HostConnection.shutdown", lambda self, uuid: None)  # guest ignores ACPI
    job = vm_job_request(vm=vm(WEB1), action="shutdown", user=admin_user, params={"timeout": 1})
    engine.job_run(job.pk, worker="w1")
    job.refresh_from_db()
    assert job.status == "failed" and job.error_code == "shutdown_timeout"
    assert job.error.startswith("the guest did not power off within 1 s")
    page = admin_client.get(f"/vms/{WEB1}/").content.decode()
    assert "the guest did not power off within 1 s" in page and f"/vms/{WEB1}/actions/force_off/" in page


def test_cancel_a_queued_job(host_a, admin_user):
    job = vm_job_request(vm=vm(WEB1), action="suspend", user=admin_user)
    engine.job_cancel(job=job, user=admin_user)
    job.refresh_from_db()
    assert job.status == "cancelled" and "cancelled by root" in job.message
    engine.job_run(job.pk, worker="w1")  # the task arrives later and does nothing
    assert vm(WEB1).state == "running"
    with pytest.raises(ServiceError, match="already cancelled"):
        engine.job_cancel(job=job, user=admin_user)


def test_illegal_transitions_are_refused(host_a):
    job = Job.objects.create(kind="suspend", vm=vm(WEB1), vm_uuid=WEB1, vm_name="web-1")
    with pytest.raises(engine.IllegalTransition):
        engine.job_transition(job, JobStatus.SUCCEEDED)
    engine.job_transition(job, JobStatus.RUNNING)
    engine.job_transition(job, JobStatus.FAILED, error="x")
    with pytest.raises(engine.IllegalTransition):
        engine.job_transition(job, JobStatus.RUNNING)


@pytest.mark.parametrize(("kind", "reached", "status"), [("suspend", True, "succeeded"), ("suspend", False, "failed")])
def test_jobs_left_running_by_a_dead_worker_are_ended_by_what_libvirt_says(host_a, raw_libvirt, kind, reached, status):
    job = Job.objects.create(
        kind=kind, vm=vm(WEB1), vm_uuid=WEB1, vm_name="web-1", host=host_a, status="running", worker="celery@gone"
    )
    if reached:
        raw_libvirt(host_a).lookupByUUIDString(WEB1).suspend()
    ended = engine.jobs_reap(worker_alive=lambda name: False)
    job.refresh_from_db()
    assert [j.pk for j in ended] == [job.pk] and job.status == status
    if status == "failed":
        assert job.error.startswith("interrupted: worker celery@gone stopped; the VM is running")
    else:
        assert "interrupted" in job.message and "paused" in job.message


def test_jobs_of_live_workers_are_left_alone(host_a):
    Job.objects.create(
        kind="suspend", vm=vm(WEB1), vm_uuid=WEB1, vm_name="web-1", host=host_a, status="running", worker="celery@alive"
    )
    assert engine.jobs_reap(worker_alive=lambda name: name == "celery@alive") == []


def test_a_redelivered_task_of_a_dead_worker_ends_the_job_instead_of_running_it_twice(host_a):
    job = Job.objects.create(
        kind="suspend", vm=vm(WEB1), vm_uuid=WEB1, vm_name="web-1", host=host_a, status="running", worker="celery@gone"
    )
    engine.job_run(job.pk, worker="celery@new")
    job.refresh_from_db()
    assert job.status == "failed" and "interrupted" in job.error
    assert vm(WEB1).state == "running"  # not suspended by a second run


def test_bulk_request_makes_one_job_per_vm_and_lists_refusals(host_a, admin_user, on_commit):
    with on_commit():
        result = vms_job_request_bulk(vms=list(VM.objects.all()), action="suspend", user=admin_user)
    assert [j.vm_name for j in result.jobs] == ["web-1"]
    assert sorted(r["name"] for r in result.refused) == ["batch-1", "db-1"]
    assert vm(WEB1).state == "paused"


def test_job_updated_events_have_the_declared_shape(host_a, run, monkeypatch):
    sent = []
    monkeypatch.setattr(
        "core.realtime.push_now", lambda groups, event: sent.append((groups, event.model_dump(mode="json")))
    )
    job = run(WEB1, "suspend")
    updates = [(g, e) for g, e in sent if e["type"] == "job.updated"]
    assert [e["job"]["status"] for _, e in updates][:2] == ["queued", "running"] and updates[-1][1]["job"][
        "status"
    ] == "succeeded"
    groups, event = updates[-1]
    assert set(groups) == {"jobs", f"job.{job.pk}", f"vm.{WEB1}"}
    assert {
        "id",
        "kind",
        "vm_uuid",
        "vm_name",
        "host",
        "status",
        "progress",
        "message",
        "error",
        "requested_by_name",
    } <= set(event["job"])
