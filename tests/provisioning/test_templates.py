"""Templates on the libvirt test driver: the mark (libvirt's metadata) and its refusals, starting a
template refused, name patterns, collisions, spread placement, linked and full deploys, the cache
of the template's disk on another host (reused, and never used for another generation), undo after
a failure half-way, the pages and the API. What the test driver cannot do (volume streams: the copy
to another host and the cloud-init seed upload; booting guests) is in tests/e2e/test_templates.py."""

from __future__ import annotations

import pytest

from core.errors import ServiceError
from jobs.models import Job
from provisioning import templates as T
from provisioning.models import TemplateImage
from storage.models import Volume
from virt.template import template_generation
from vms import actions
from vms.models import VM

GOLD = "11111111-1111-4111-8111-111111111401"
BUSY = "11111111-1111-4111-8111-111111111402"


@pytest.fixture
def host1(add_host):
    return add_host("tpl1", "host-tpl1.xml")


@pytest.fixture
def host2(add_host):
    return add_host("tpl2", "host-tpl2.xml")


@pytest.fixture
def run(on_commit, admin_user):
    """Ask for a job through a service and let it run (Celery is eager in tests)."""

    def go(service, **kwargs):
        kwargs.setdefault("user", admin_user)
        with on_commit():
            job = service(**kwargs)
        job.refresh_from_db()
        return job

    return go


def gold():
    return VM.objects.get(uuid=GOLD)


@pytest.fixture
def template(host1, run):
    job = run(T.template_mark_request, vm=gold())
    assert job.status == "succeeded", job.error
    vm = gold()
    assert vm.template
    return vm


def deploy(run, vm, **params):
    params.setdefault("cloud_init", False)  # the test driver cannot upload a seed
    return run(T.template_deploy_request, template=vm, params=params)


def domains(raw_libvirt, host):
    return sorted(d.name() for d in raw_libvirt(host).listAllDomains(0))


def volumes(raw_libvirt, host):
    return sorted(raw_libvirt(host).storagePoolLookupByName("images").listVolumes())


# --- the mark ---------------------------------------------------------------------------------------------
def test_marking_sets_the_metadata_with_a_new_generation_and_start_is_refused(template, raw_libvirt, host1, run):
    xml = raw_libvirt(host1).lookupByUUIDString(GOLD).XMLDesc(2)  # INACTIVE
    first = template_generation(xml)
    assert len(first) == 16 and 'xmlns:vf="https://virtfleet.dev/xmlns/template/1"' in xml
    assert "it is a template: templates never start" in actions.refusal(template, "start")
    from vms.services import vm_job_request

    with pytest.raises(ServiceError, match="templates never start"):
        run(vm_job_request, vm=template, action="start")
    assert run(T.template_unmark_request, vm=template).status == "succeeded"
    assert not gold().template and not template_generation(raw_libvirt(host1).lookupByUUIDString(GOLD).XMLDesc(2))
    assert run(T.template_mark_request, vm=gold()).status == "succeeded"
    assert template_generation(raw_libvirt(host1).lookupByUUIDString(GOLD).XMLDesc(2)) not in ("", first)


def test_marking_turns_autostart_off_and_says_so(host1, raw_libvirt, run):
    raw_libvirt(host1).lookupByUUIDString(GOLD).setAutostart(1)
    job = run(T.template_mark_request, vm=gold())
    assert job.status == "succeeded" and "autostart turned off" in job.message
    assert raw_libvirt(host1).lookupByUUIDString(GOLD).autostart() == 0


def test_a_running_or_transient_vm_is_not_marked(host1, raw_libvirt, run):
    with pytest.raises(ServiceError, match="it is running: shut it down first"):
        run(T.template_mark_request, vm=VM.objects.get(uuid=BUSY))
    raw_libvirt(host1).lookupByUUIDString(BUSY).undefine()  # still running: transient now
    from hosts.services import host_sync

    host_sync(host=host1)
    with pytest.raises(ServiceError, match="transient"):
        run(T.template_mark_request, vm=VM.objects.get(uuid=BUSY))
    assert not Job.objects.filter(kind="vm.template_mark").exists()


def test_unmarking_is_refused_while_vms_are_linked_to_its_disk(template, run, raw_libvirt, host1):
    job = deploy(run, template, name_pattern="t-{n}", count=1)
    assert job.status == "succeeded", job.error
    with pytest.raises(ServiceError, match=r"linked VM disk\(s\) on tpl1 are overlays of its disk \(t-1-vda.qcow2\)"):
        run(T.template_unmark_request, vm=gold())
    assert gold().template


def test_unmarking_is_refused_while_a_deploy_from_it_is_running(template, run):
    from core.errors import Conflict

    busy = Job.objects.create(kind="template.deploy", vm=template, vm_uuid=template.uuid, vm_name=template.name,
                              host=template.host, lock_key=f"vm:{template.uuid}", status="running")  # fmt: skip
    with pytest.raises(Conflict, match=f"busy with deploy from template \\(job {busy.pk}\\)"):
        run(T.template_unmark_request, vm=template)
    assert gold().template


# --- names ------------------------------------------------------------------------------------------------
def test_name_patterns():
    assert T.expand_pattern("web-{n}", count=3) == ["web-1", "web-2", "web-3"]
    assert T.expand_pattern("web-{n:02}", count=2, first=9) == ["web-09", "web-10"]
    assert T.expand_pattern("db", count=1) == ["db"]


@pytest.mark.parametrize(
    ("params", "message", "field"),
    [
        ({"name_pattern": "web", "count": 3}, "3 VMs need 3 names: put {n} in the pattern", "params.name_pattern"),
        ({"name_pattern": "web-{x}", "count": 2}, "{x} is not a placeholder", "params.name_pattern"),
        ({"name_pattern": "web-{n", "count": 2}, "A lone { or } is not allowed", "params.name_pattern"),
        ({"name_pattern": "a/{n}", "count": 2}, "'a/1' is not a VM name", "params.name_pattern"),
        ({"name_pattern": "", "count": 2}, "This field may not be blank", "params.name_pattern"),
        ({"name_pattern": "w{n}", "count": 51}, "count must be between 1 and 50 VMs", "params.count"),
        ({"name_pattern": "w{n}", "count": "many"}, "count must be a whole number", "params.count"),
        ({"name_pattern": "w{n}", "ci_user": "bob"}, "turn cloud-init on", "params.ci_user"),
        ({"name_pattern": "w{n}", "host": 99999}, "Choose a host you may create VMs on", "params.host"),
        ({"name_pattern": "w{n}", "host": 1, "spread": True}, "Choose a host or spread, not both", "params.host"),
        ({"name_pattern": "w{n}", "disk_mode": "thin"}, "is not a valid choice", "params.disk_mode"),
        ({"name_pattern": "w{n}", "cloud_init": True, "ci_hostname": "h.{n}"}, "'h.1' is not a host name",
         "params.ci_hostname"),
        ({"name_pattern": "w{n}", "bogus": 1}, "Unknown option(s) for template.deploy: bogus", "params"),
    ],
)  # fmt: skip
def test_bad_deploy_options_are_refused_before_anything_is_made(template, run, raw_libvirt, host1, params, message,
                                                                 field):  # fmt: skip
    before = domains(raw_libvirt, host1), volumes(raw_libvirt, host1)
    params.setdefault("cloud_init", False)
    with pytest.raises(ServiceError) as refused:
        run(T.template_deploy_request, template=template, params=params)
    assert message in refused.value.message
    assert (refused.value.field or "").startswith(field)
    assert (domains(raw_libvirt, host1), volumes(raw_libvirt, host1)) == before
    assert not Job.objects.filter(kind__startswith="template.").exists()


def test_names_taken_on_the_host_are_refused_before_anything_is_made(template, run, raw_libvirt, host1):
    with pytest.raises(ServiceError, match="tpl1 already has a VM named busy") as refused:
        deploy(run, template, name_pattern="busy", count=1)
    assert refused.value.field == "params.name_pattern"
    assert not Job.objects.filter(kind__startswith="template.").exists()


def test_a_template_is_refused_as_a_deploy_source_once_unmarked(template, run):
    run(T.template_unmark_request, vm=template)
    with pytest.raises(ServiceError, match="not a template"):
        deploy(run, gold(), name_pattern="x{n}")


# --- deploying on the template's host ------------------------------------------------------------------------
def test_linked_deploy_makes_running_vms_with_overlays_on_the_template_disk(template, run, raw_libvirt, host1):
    job = deploy(run, template, name_pattern="web-{n:02}", count=3)
    assert job.status == "succeeded", job.error
    assert job.message.startswith("deployed 3 VM(s) from gold: web-01 on tpl1, web-02 on tpl1, web-03 on tpl1")
    children = list(job.children.order_by("pk"))
    assert [c.kind for c in children] == ["template.deploy_vm"] * 3
    assert all(c.status == "succeeded" for c in children)
    assert {c.lock_key for c in children} == {f"vmname:{host1.pk}:web-0{i}" for i in (1, 2, 3)}
    vms = list(VM.objects.filter(name__startswith="web-0").order_by("name"))
    assert [(v.name, v.state, v.template) for v in vms] == [(f"web-0{i}", "running", False) for i in (1, 2, 3)]
    assert len({v.interfaces[0]["mac"] for v in vms} | {gold().interfaces[0]["mac"]}) == 4
    for vm in vms:
        overlay = Volume.objects.get(pool__host=host1, name=f"{vm.name}-vda.qcow2")
        assert (overlay.backing_path, overlay.format) == ("/var/lib/images/gold.qcow2", "qcow2")
        assert [d["device"] for d in vm.disks] == ["disk"]  # the template's CD-ROM is not carried over
    xml = raw_libvirt(host1).lookupByName("web-01").XMLDesc(1)  # SECURE
    assert "goldpass" not in xml and "passwd=" in xml  # a VNC password of its own
    assert "virtfleet.dev/xmlns/template" not in xml
    assert gold().state == "shutoff" and "gold.qcow2" in volumes(raw_libvirt, host1)


def test_full_deploy_copies_the_disk(template, run, raw_libvirt, host1):
    job = deploy(run, template, name_pattern="full{n}", count=1, disk_mode="full", start=False)
    assert job.status == "succeeded", job.error
    copy = Volume.objects.get(pool__host=host1, name="full1-vda.qcow2")
    assert copy.backing_path == "" and copy.capacity == 4 * 2**30
    assert VM.objects.get(name="full1").state == "shutoff"


def test_a_failure_half_way_undoes_what_that_vm_made_and_keeps_the_others(template, run, raw_libvirt, host1,
                                                                            monkeypatch):  # fmt: skip
    """The 3rd VM's name is taken on the host by the time its job runs (behind Virtfleet's back)."""
    start_children = T._start_children

    def then_take_the_name(ctx, *args):
        answer = start_children(ctx, *args)
        from tests.helpers import domain_xml

        raw_libvirt(host1).defineXML(domain_xml("t-3", "33333333-3333-4333-8333-333333333333"))
        return answer

    monkeypatch.setattr(T, "_start_children", then_take_the_name)
    before = set(volumes(raw_libvirt, host1))
    job = deploy(run, template, name_pattern="t-{n}", count=3)
    assert job.status == "failed"
    assert (
        "2 of 3 VM(s) deployed (t-1 on tpl1, t-2 on tpl1) — t-3: the host already has a domain named t-3" in job.error
    )
    assert set(volumes(raw_libvirt, host1)) - before == {"t-1-vda.qcow2", "t-2-vda.qcow2"}
    assert (
        raw_libvirt(host1).lookupByName("t-3").UUIDString() == "33333333-3333-4333-8333-333333333333"
    )  # not ours: kept
    assert not Job.objects.active().exists()


def test_a_failed_seed_removes_the_overlay_and_the_seed_never_the_template_disk(template, run, raw_libvirt, host1):
    # The test driver has no volume uploads: the seed step fails after the overlay was made.
    before = volumes(raw_libvirt, host1), domains(raw_libvirt, host1)
    job = run(T.template_deploy_request, template=template, params={"name_pattern": "ci{n}", "count": 1,
                                                                     "ci_user": "ops", "ci_password": "pw-12345"})  # fmt: skip
    assert job.status == "failed"
    child = job.children.get()
    assert "undone: deleted the volume(s) it had made: ci1-vda.qcow2, ci1-seed.iso" in child.error
    assert (volumes(raw_libvirt, host1), domains(raw_libvirt, host1)) == before
    assert child.params["plan"]["cloud_init"]["hostname"] == "ci1"
    assert "pw-12345" not in str(job.params) and "pw-12345" not in str(child.params)
    assert child.spec.shown_params(child.params)["plan"]["cloud_init"]["password_hash"] == "(hidden)"


# --- other hosts: placement and the cached copy ---------------------------------------------------------------
def test_spread_places_the_vms_by_free_memory_over_the_hosts(template, host2, run):
    from hosts.models import Host

    Host.objects.filter(pk=template.host_id).update(free_memory_bytes=8 * 2**30)
    Host.objects.filter(pk=host2.pk).update(free_memory_bytes=8 * 2**30 + 100 * 2**20)
    job = deploy(run, template, name_pattern="s{n}", count=3, spread=True)
    placed = [(p["name"], p["host"]) for p in job.params["placement"]]
    assert placed == [("s1", host2.pk), ("s2", template.host_id), ("s3", host2.pk)]


def test_spread_refuses_when_the_hosts_have_no_room(template, host2, run):
    from hosts.models import Host

    Host.objects.update(free_memory_bytes=300 * 2**20)  # room for one 256 MiB VM per host
    with pytest.raises(ServiceError, match="room for 2 of the 3 VMs") as refused:
        deploy(run, template, name_pattern="s{n}", count=3, spread=True)
    assert refused.value.field == "params.spread"


def test_a_copy_that_fails_half_way_is_removed(template, host2, run, raw_libvirt):
    # The test driver has no volume streams: the copy to tpl2 fails after its volume was made.
    job = deploy(run, template, name_pattern="far{n}", count=1, host=host2.pk)
    assert job.status == "failed"
    assert "undone: removed the partial copy gold-vda-" in job.error and "on tpl2" in job.error
    assert volumes(raw_libvirt, host2) == [] and not TemplateImage.objects.exists()
    assert not job.children.exists() and not Job.objects.active().exists()


def _cached_copy(host2, raw_libvirt, template, generation=None):
    """A complete copy of gold's disk on tpl2, as an earlier deploy there leaves it."""
    from hosts.services import host_sync

    generation = generation or template_generation(gold().xml)
    name = T.cache_volume_name("gold", "vda", generation, "qcow2")
    raw_libvirt(host2).storagePoolLookupByName("images").createXML(
        f"<volume><name>{name}</name><capacity unit='GiB'>4</capacity><target><format type='qcow2'/></target></volume>",
        0,
    )
    host_sync(host=host2)
    return TemplateImage.objects.create(template=template, target="vda", host=host2, pool="images", volume=name,
                                        path=f"/var/lib/images/{name}", generation=generation, complete=True)  # fmt: skip


def test_a_deploy_to_a_host_with_a_copy_reuses_it_without_copying(template, host2, run, raw_libvirt):
    image = _cached_copy(host2, raw_libvirt, template)
    job = deploy(run, template, name_pattern="far{n}", count=2, host=host2.pk)
    assert job.status == "succeeded", job.error
    timeline = list(job.events.values_list("message", flat=True))
    assert any(f"reusing the copy of vda on tpl2 ({image.volume}" in m and "no copy needed" in m for m in timeline)
    assert not any(m.startswith("copying") for m in timeline)
    for name in ("far1", "far2"):
        assert Volume.objects.get(pool__host=host2, name=f"{name}-vda.qcow2").backing_path == image.path
        assert VM.objects.get(name=name).host_id == host2.pk
    assert TemplateImage.objects.get().pk == image.pk


def test_a_copy_of_an_earlier_generation_is_not_used_and_is_kept_while_vms_are_linked_to_it(template, host2, run,
                                                                                            raw_libvirt):  # fmt: skip
    old = _cached_copy(host2, raw_libvirt, template)
    assert deploy(run, template, name_pattern="old{n}", count=1, host=host2.pk).status == "succeeded"
    run(T.template_unmark_request, vm=gold())  # its VMs on tpl2 keep its old copy: unmark does not take it
    assert TemplateImage.objects.filter(pk=old.pk).exists()
    run(T.template_mark_request, vm=gold())  # a new generation
    job = deploy(run, template, name_pattern="new{n}", count=1, host=host2.pk)
    assert job.status == "failed"  # it copies again (and the test driver cannot stream)
    assert "reusing" not in " ".join(job.events.values_list("message", flat=True))
    assert old.volume in volumes(raw_libvirt, host2)  # old1's disk is backed by it: never removed
    assert TemplateImage.objects.filter(pk=old.pk).exists()


def test_an_unused_copy_of_an_earlier_generation_is_removed(template, host2, run, raw_libvirt):
    old = _cached_copy(host2, raw_libvirt, template, generation="0123456789abcdef")
    job = deploy(run, template, name_pattern="x{n}", count=1, host=host2.pk)
    assert f"removed unused copies of an earlier generation: {old.volume} on tpl2" in " ".join(
        job.events.values_list("message", flat=True))  # fmt: skip
    assert old.volume not in volumes(raw_libvirt, host2)
    assert not TemplateImage.objects.filter(pk=old.pk).exists()


# --- pages and API -------------------------------------------------------------------------------------------
def test_templates_page_and_vm_tables(template, admin_client):
    page = admin_client.get("/templates/").content.decode()
    assert "gold" in page and "tag-template" in page and f"/templates/{GOLD}/deploy/" in page and "300.0\xa0MB" in page
    fleet = admin_client.get("/?template=1").content.decode()
    assert ">gold<" in fleet and ">busy<" not in fleet and 'data-field="template"' in fleet
    assert ">gold<" not in admin_client.get("/?template=0").content.decode()
    vm_page = admin_client.get(f"/vms/{GOLD}/").content.decode()
    assert "is a template" in vm_page and 'data-action="template-unmark"' in vm_page
    assert "Start: it is a template: templates never start" in vm_page


def test_deploy_form_shows_errors_at_their_field_and_starts_a_job(template, admin_client, on_commit):
    form = admin_client.get(f"/templates/{GOLD}/deploy/").content.decode()
    assert 'id="name-preview"' in form and 'value="spread"' in form
    page = admin_client.post(f"/templates/{GOLD}/deploy/", {"count": "3", "name_pattern": "web", "cloud_init": ""})
    assert page.status_code == 200
    assert b'data-error-for="name_pattern">3 VMs need 3 names' in page.content
    with on_commit():
        done = admin_client.post(f"/templates/{GOLD}/deploy/", {"count": "2", "name_pattern": "w{n}", "start": "on"})
    job = Job.objects.get(kind="template.deploy")
    assert done.status_code == 302 and done["Location"] == f"/jobs/{job.pk}/"
    assert job.status == "succeeded", job.error
    detail = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Jobs it started" in detail and "w1" in detail and "w2" in detail


def test_api(template, admin_client, on_commit, host1):
    listed = admin_client.get("/api/templates/").json()
    assert [(t["name"], t["host_name"], t["copies"]) for t in listed] == [("gold", "tpl1", [])]
    url = f"/api/templates/{GOLD}/deploy/"
    for body, status, text in [
        ([1, 2], 400, "Send a JSON object"),
        ({"name_pattern": "a{n}", "count": 0}, 400, "count must be between 1 and 50"),
        ({"name_pattern": "a{n}", "host": "lab"}, 400, "A valid integer is required"),
        ({"name_pattern": "busy", "cloud_init": False}, 400, "tpl1 already has a VM named busy"),
        ({"name_pattern": "{n}{", "count": 2}, 400, "lone"),
        ({"count": 2}, 400, "This field is required"),
    ]:
        response = admin_client.post(url, body, content_type="application/json")
        assert response.status_code == status, (body, response.content)
        assert text in response.json()["error"], (body, response.json())
    assert admin_client.post(f"/api/templates/{BUSY}/deploy/", {"name_pattern": "x"},
                             content_type="application/json").status_code == 400  # fmt: skip
    assert admin_client.post("/api/templates/not-a-uuid/deploy/").status_code == 404
    with on_commit():
        response = admin_client.post(url, {"name_pattern": "api{n}", "count": 2, "cloud_init": False},
                                     content_type="application/json")  # fmt: skip
    assert response.status_code == 202 and Job.objects.get(pk=response.json()["id"]).status == "succeeded"
    assert admin_client.delete(f"/api/vms/{GOLD}/template/").status_code == 400  # its VMs are linked to it
    busy = admin_client.post(f"/api/vms/{BUSY}/template/")
    assert busy.status_code == 400 and "shut it down first" in busy.json()["error"]
