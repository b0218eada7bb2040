"""History retention: finished jobs, audit events and closed console sessions older than their
retention go; active jobs, open sessions and anything younger stay; 0 days keeps everything."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEvent
from console.models import ConsoleSession
from dashboard.retention import prune_history
from jobs.models import Job, JobEvent
from vms.models import VM

NOW = timezone.now()
OLD = NOW - dt.timedelta(days=40)
RECENT = NOW - dt.timedelta(days=5)


@pytest.fixture
def history(host_a):
    vm = VM.objects.get(name="web-1")

    def job(status, finished, kind="suspend"):
        j = Job.objects.create(
            kind=kind, vm=vm, vm_uuid=vm.uuid, vm_name=vm.name, host=vm.host, host_name=vm.host.name,
            status=status, queued_at=OLD, started_at=OLD, finished_at=finished,
        )  # fmt: skip
        JobEvent.objects.create(job=j, status=status, message="x")
        return j

    old_done = job("succeeded", OLD)
    old_failed = job("failed", OLD, kind="resume")
    recent_done = job("succeeded", RECENT, kind="reboot")
    old_running = Job.objects.create(  # a job stuck from long ago is the reaper's business, not ours
        kind="start", vm=vm, vm_uuid=vm.uuid, vm_name=vm.name, host=vm.host, status="running", queued_at=OLD
    )
    AuditEvent.objects.all().delete()
    AuditEvent.objects.create(at=OLD, username="ada", action="vm.reboot")
    AuditEvent.objects.create(at=RECENT, username="ada", action="vm.suspend")

    def session(opened, closed):
        return ConsoleSession.objects.create(
            username="ada", vm=vm, vm_uuid=vm.uuid, vm_name=vm.name, opened_at=opened, closed_at=closed
        )

    old_closed, old_open, recent = session(OLD, OLD), session(OLD, None), session(RECENT, RECENT)
    return {
        "kept_jobs": {recent_done.pk, old_running.pk},
        "gone_jobs": {old_done.pk, old_failed.pk},
        "kept_sessions": {old_open.pk, recent.pk},
        "gone_sessions": {old_closed.pk},
    }


def test_zero_days_keeps_everything(history):
    result = prune_history(job_days=0, audit_days=0)
    assert result.total == 0 and not result.cutoffs
    assert Job.objects.count() == 4 and AuditEvent.objects.count() == 2 and ConsoleSession.objects.count() == 3


def test_old_finished_history_goes_and_the_rest_stays(history, on_commit):
    with on_commit():
        result = prune_history(job_days=30, audit_days=30)
    assert (result.jobs, result.audit_events, result.console_sessions) == (2, 1, 1)
    assert set(Job.objects.values_list("pk", flat=True)) == history["kept_jobs"]
    assert not JobEvent.objects.filter(job_id__in=history["gone_jobs"]).exists()  # timelines go with their jobs
    assert set(ConsoleSession.objects.values_list("pk", flat=True)) == history["kept_sessions"]
    # the pruning itself is audited, by Virtfleet, with what it removed
    record = AuditEvent.objects.get(action="history.prune")
    assert record.username == "system" and record.details["jobs"] == 2 and record.details["audit_events"] == 1
    assert set(AuditEvent.objects.values_list("action", flat=True)) == {"vm.suspend", "history.prune"}
    # a second run finds nothing and records nothing more
    with on_commit():
        assert prune_history(job_days=30, audit_days=30).total == 0
    assert AuditEvent.objects.filter(action="history.prune").count() == 1


def test_settings_decide_when_not_given(history, settings):
    settings.VIRTFLEET = {**settings.VIRTFLEET, "JOB_RETENTION_DAYS": 30, "AUDIT_RETENTION_DAYS": 0}
    result = prune_history()
    assert result.jobs == 2 and result.audit_events == 0 and set(result.cutoffs) == {"jobs"}


def test_batches_cover_more_rows_than_one_batch(host_a, monkeypatch):
    monkeypatch.setattr("dashboard.retention.BATCH", 3)
    AuditEvent.objects.bulk_create(AuditEvent(at=OLD, action="vm.start") for _ in range(10))
    assert prune_history(job_days=0, audit_days=30).audit_events == 10
    assert not AuditEvent.objects.filter(action="vm.start").exists()


def test_command_dry_run_counts_and_changes_nothing(history, capsys):
    call_command("prune_history", "--job-days", "30", "--audit-days", "30", "--dry-run")
    out = capsys.readouterr().out
    assert "Would delete 2 finished jobs, 1 audit events and 1 console sessions" in out
    assert Job.objects.count() == 4 and ConsoleSession.objects.count() == 3


def test_command_refuses_bad_days(db):
    for bad in ("-1", "soon"):
        with pytest.raises(CommandError):
            call_command("prune_history", "--job-days", bad)


def test_command_says_when_retention_is_off(db, capsys):
    call_command("prune_history")
    assert "Nothing to prune" in capsys.readouterr().out


def test_beat_runs_it_daily_on_the_inventory_queue():
    from dashboard.celery import app

    app.loader.import_default_modules()  # what a worker and beat do at start: autodiscovery
    app.finalize()
    entry = app.conf.beat_schedule["prune-history"]
    assert entry["task"] == "dashboard.tasks.prune_history_task" and entry["schedule"] == 86400.0
    assert "dashboard.tasks.prune_history_task" in app.tasks
    route = app.amqp.router.route({}, "dashboard.tasks.prune_history_task")
    assert route["queue"].name == "inventory"
