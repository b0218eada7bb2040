"""Migration services: options, targets, pre-flight, slots and maintenance planning.

The libvirt test driver cannot migrate; the migration itself is tested end to end on the lab
(tests/e2e/test_migration.py). Everything before and around it is tested here.
"""

import pytest

from core.errors import ServiceError
from hosts.models import Host
from jobs.models import Job
from migration.services import (
    PreflightFailed,
    host_maintenance_enter,
    host_maintenance_leave,
    maintenance_plan,
    migration_options,
    migration_postcopy,
    migration_preflight,
    migration_request,
    migration_targets,
    slots_message,
)
from tests.helpers import domain_xml
from vms.models import VM
from vms.services import vm_job_request

WEB1 = "11111111-1111-4111-8111-111111111101"  # running on host-a
DB1 = "11111111-1111-4111-8111-111111111102"  # shut off on host-a


def vm(uuid):
    return VM.objects.select_related("host").get(uuid=uuid)


def test_options_default_to_live_for_a_running_vm_and_offline_for_a_stopped_one(host_a):
    assert migration_options(vm=vm(WEB1), params={})["live"] is True
    assert migration_options(vm=vm(DB1), params={})["live"] is False


@pytest.mark.parametrize(
    ("uuid", "params", "says"),
    [
        (DB1, {"live": True}, "only a running or paused VM migrates live"),
        (WEB1, {"live": False}, "offline migration moves a shut-off VM"),
        (WEB1, {"copy_storage": "some"}, 'copy_storage must be "", "all" or "inc"'),
        (WEB1, {"bandwidth_mibs": "fast"}, "bandwidth_mibs must be a whole number"),
        (WEB1, {"bandwidth_mibs": -5}, "between 0 and 100000"),
        (WEB1, {"max_downtime_ms": 10**9}, "between 0 and 60000"),
        (WEB1, {"teleport": True}, "Unknown migration option(s): teleport"),
        (DB1, {"postcopy": True}, "apply to live migration only"),
    ],
)
def test_bad_options_are_refused(host_a, uuid, params, says):
    with pytest.raises(ServiceError) as exc:
        migration_options(vm=vm(uuid), params=params)
    assert says in exc.value.message


def test_targets_list_every_other_host_with_why_not(host_a, host_b, add_host):
    down = add_host("down", "host-storage.xml")
    Host.objects.filter(pk=down.pk).update(state="unreachable")
    Host.objects.filter(pk=host_b.pk).update(free_memory_bytes=8 * 2**30)
    targets = {t.host.name: t for t in migration_targets(vm=vm(WEB1))}
    assert set(targets) == {"host-b", "down"}
    assert targets["host-b"].eligible and targets["host-b"].reason == ""
    assert not targets["down"].eligible and targets["down"].reason == "unreachable"
    Host.objects.filter(pk=host_b.pk).update(maintenance="on")
    assert migration_targets(vm=vm(WEB1))[0].reason in ("in maintenance", "unreachable")


def test_preflight_refuses_a_target_in_maintenance_or_unreachable(host_a, host_b):
    Host.objects.filter(pk=host_b.pk).update(maintenance="on")
    checks = migration_preflight(vm=vm(WEB1), target=Host.objects.get(pk=host_b.pk), options={"live": True})
    failed = {c.name: c.message for c in checks if not c.ok}
    assert failed == {"not in maintenance": "host-b is in maintenance"}
    with pytest.raises(PreflightFailed) as exc:
        migration_request(vm=vm(WEB1), target=Host.objects.get(pk=host_b.pk))
    assert "Pre-flight checks failed: not in maintenance: host-b is in maintenance" in exc.value.message
    assert not Job.objects.exists()


def test_preflight_asks_both_hosts(host_a, host_b, raw_libvirt):
    """Against the test driver: a domain of the same name on the target blocks the migration."""
    raw_libvirt(host_b).defineXML(domain_xml("web-1", "44444444-4444-4444-8444-444444444444"))
    checks = migration_preflight(vm=vm(WEB1), target=host_b, options=migration_options(vm=vm(WEB1), params={}))
    by_name = {c.name: c for c in checks}
    assert not by_name["no duplicate"].ok and "already has a domain web-1" in by_name["no duplicate"].message
    # The test driver's capabilities offer i686 guests only: an honest "no" for this x86_64 VM.
    assert not by_name["architecture"].ok and "not supported on the target" in by_name["architecture"].message
    assert by_name["state"].ok and by_name["hypervisor"].ok and by_name["distinct host"].ok
    assert by_name["storage"].ok  # no disks


def test_preflight_requires_copy_storage_for_disks_the_target_cannot_see(add_host, host_b, raw_libvirt):
    add_host("storage", "host-storage.xml")
    data = "11111111-1111-4111-8111-111111111104"
    checks = {
        c.name: c
        for c in migration_preflight(vm=vm(data), target=host_b, options=migration_options(vm=vm(data), params={}))
    }
    assert not checks["storage"].ok and "choose copy storage" in checks["storage"].message
    options = migration_options(vm=vm(data), params={"copy_storage": "all"})
    checks = {c.name: c for c in migration_preflight(vm=vm(data), target=host_b, options=options)}
    assert checks["storage"].ok


def test_migration_slots_per_host(host_a, host_b, settings):
    settings.VIRTFLEET = {**settings.VIRTFLEET, "MIGRATION_MAX_OUTGOING": 1}
    job = Job.objects.create(
        kind="migrate", vm=vm(WEB1), vm_uuid=WEB1, vm_name="web-1", host=host_a, host_name="host-a", target_host=host_b
    )
    assert slots_message(job) == ""
    Job.objects.create(
        kind="migrate",
        vm=vm(DB1),
        vm_uuid=DB1,
        vm_name="db-1",
        host=host_a,
        host_name="host-a",
        target_host=host_b,
        status="running",
    )
    assert slots_message(job) == "waiting for a migration slot: host-a already sends 1 of 1 migrations"


def test_postcopy_switch_only_for_running_migrations_that_allow_it(host_a, host_b):
    job = Job.objects.create(
        kind="migrate",
        vm=vm(WEB1),
        vm_uuid=WEB1,
        vm_name="web-1",
        host=host_a,
        target_host=host_b,
        status="running",
        params={"postcopy": False},
    )
    with pytest.raises(ServiceError, match="started without post-copy"):
        migration_postcopy(job=job)
    Job.objects.filter(pk=job.pk).update(params={"postcopy": True})
    job.refresh_from_db()
    assert migration_postcopy(job=job).postcopy_requested


def test_a_vm_with_an_active_job_cannot_migrate(host_a, host_b, admin_user):
    vm_job_request(vm=vm(WEB1), action="suspend", user=admin_user)
    with pytest.raises(ServiceError, match="busy with suspend"):
        migration_request(vm=vm(WEB1), target=host_b)


def test_maintenance_plan_places_by_free_memory_and_explains_the_rest(host_a, host_b, add_host):
    third = add_host("host-c", "host-storage.xml")
    Host.objects.filter(pk=host_b.pk).update(free_memory_bytes=2 * 2**30)
    Host.objects.filter(pk=third.pk).update(free_memory_bytes=1000 * 2**20)
    VM.objects.filter(uuid=WEB1).update(memory_kib=1024 * 1024)
    VM.objects.filter(name="batch-1").update(memory_kib=512 * 1024)  # paused: moves too
    plan = {p.vm.name: p for p in maintenance_plan(host=Host.objects.get(pk=host_a.pk))}
    assert set(plan) == {"web-1", "batch-1"}  # db-1 is shut off: it stays
    assert plan["web-1"].target.name == "host-b"
    assert plan["batch-1"].target.name == "host-c"  # host-b has ~960 MiB left after web-1, host-c 1000 MiB
    Host.objects.filter(pk__in=[host_b.pk, third.pk]).update(free_memory_bytes=100 * 2**20)
    plan = maintenance_plan(host=Host.objects.get(pk=host_a.pk))
    assert all(p.target is None and "MiB free" in p.reason for p in plan)


def test_entering_maintenance_refuses_new_vms_and_leaving_returns_to_service(host_a, host_b, on_commit, monkeypatch):
    monkeypatch.setattr("jobs.engine.enqueue_on_commit", lambda *a, **k: None)  # the evacuation runs on the lab
    with on_commit():
        job = host_maintenance_enter(host=host_a)
    host = Host.objects.get(pk=host_a.pk)
    assert job.kind == "maintenance" and job.vm_uuid is None and host.maintenance == "entering"
    with pytest.raises(ServiceError, match="is in maintenance"):
        vm_job_request(vm=vm(DB1), action="start")
    with pytest.raises(ServiceError, match="being evacuated"):
        host_maintenance_leave(host=host)
    Job.objects.filter(pk=job.pk).update(status="succeeded")
    Host.objects.filter(pk=host.pk).update(maintenance="on")
    host_maintenance_leave(host=Host.objects.get(pk=host.pk))
    assert Host.objects.get(pk=host.pk).maintenance == ""
    with pytest.raises(ServiceError, match="not in maintenance"):
        host_maintenance_leave(host=Host.objects.get(pk=host.pk))
