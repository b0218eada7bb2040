"""Storage end to end on the lab's real hosts: uploads from the browser and by the chunk protocol,
downloads, a copy to another host, resize and wipe — the bytes checked on the host with virsh, the
faults (wrong checksum, a dropped connection, a worker killed mid-upload) ending in a true state."""

from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest
import requests

from jobs.models import Job
from storage import uploader
from storage.models import StoragePool, Volume
from tests.e2e.conftest import LAB_DIR, screenshot, virsh, wait_for

pytestmark = [pytest.mark.e2e]
MiB = 2**20


def job_done(job_id):
    job = Job.objects.get(pk=job_id)
    return job if job.status in ("succeeded", "failed", "cancelled") else None


def make_image(path, *, data_mib: int = 4, hole_mib: int = 12) -> str:
    """A file of random data, a long run of zeros (a hole to keep), and random data again."""
    with open(path, "wb") as f:
        f.write(os.urandom(data_mib * MiB))
        f.write(bytes(hole_mib * MiB))
        f.write(os.urandom(data_mib * MiB))
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def host_sha256(lab_host, pool: str, volume: str, tmp_path) -> str:
    """The volume's content as the host has it (virsh vol-download)."""
    out = tmp_path / f"back-{volume}"
    virsh(lab_host, "vol-download", "--pool", pool, volume, str(out))
    return hashlib.sha256(out.read_bytes()).hexdigest()


class Client:
    """The upload protocol as storage.js speaks it, from Python, with a personal API token (how a
    script would do it)."""

    def __init__(self, base: str, user):
        from accounts.services import token_create

        _instance, token = token_create(user=user, name="e2e storage", expires_in_days=1)
        self.base = base
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Token {token}"
        self.headers: dict = {}

    def start(self, pool_id: int, name: str, **params):
        return self.s.post(self.base + "/api/uploads/", json={"pool": pool_id, "name": name, "params": params},
                           headers=self.headers)  # fmt: skip

    def send(self, upload: dict, path, *, stop_after: int | None = None) -> int:
        with open(path, "rb") as f:
            return uploader.send(self.s, self.base, upload, f, os.path.getsize(path), stop_after=stop_after)


@pytest.fixture
def lab_pools(lab_hosts, lab_state):
    """The lab pool of each real host, as Virtfleet reads it, with what earlier tests left removed."""
    pools = [StoragePool.objects.get(host=h, name="lab") for h in lab_hosts]
    for lab_host in lab_state.real_hosts:
        for name in virsh(lab_host, "vol-list", "--pool", "lab").splitlines():
            volume = name.split()[0] if name.strip() else ""
            if volume.startswith("t-"):
                virsh(lab_host, "vol-delete", "--pool", "lab", volume)
        virsh(lab_host, "pool-refresh", "lab")
    return pools


def test_the_lab_pool_holds_bootable_media(lab_pools):
    names = set(Volume.objects.filter(pool=lab_pools[0]).values_list("name", flat=True))
    assert {"lab-boot.iso", "lab-disk.qcow2"} <= names
    iso = Volume.objects.get(pool=lab_pools[0], name="lab-boot.iso")
    assert iso.capacity > MiB and lab_pools[0].state == "active" and lab_pools[0].autostart


def test_upload_from_the_browser_keeps_holes_and_checks_the_sum(page, stack, lab_state, lab_pools, tmp_path):
    image = tmp_path / "t-browser.img"
    digest = make_image(image)
    pool = lab_pools[0]
    page.goto(f"{stack.url}/storage/pools/{pool.pk}/")
    page.wait_for_selector("#live-indicator.live-up")
    page.set_input_files("#u-file", str(image))
    page.fill("#u-sha", digest)
    page.click('button[data-action="upload"]')
    page.wait_for_function("document.getElementById('upload-text').innerText.startsWith('Done:')", timeout=60000)
    screenshot(page, "storage-upload-done")
    job = Job.objects.filter(kind="volume.upload").latest("id")
    assert job.status == "succeeded" and job.result["sha256"] == digest
    lab1 = lab_state.real_hosts[0]
    assert host_sha256(lab1, "lab", "t-browser.img", tmp_path) == digest
    volume = wait_for(lambda: Volume.objects.filter(pool=pool, name="t-browser.img").first(), 10, message="the row")
    assert volume.capacity == 20 * MiB and volume.allocation < 12 * MiB  # the 12 MiB of zeros stayed a hole
    page.wait_for_selector('tr:has-text("t-browser.img")', timeout=10000)  # the volume table followed


def test_an_upload_resumes_where_the_host_has_it_and_refuses_what_is_wrong(
    stack, lab_pools, lab_state, tmp_path, e2e_user
):
    image = tmp_path / "t-resume.img"
    digest = make_image(image, data_mib=6, hole_mib=10)
    client = Client(stack.url, e2e_user)
    upload = client.start(lab_pools[0].pk, "t-resume.img", size=os.path.getsize(image), sha256=digest).json()
    url = stack.url + upload["url"]
    assert client.start(lab_pools[0].pk, "t-resume.img", size=10).status_code == 409  # one upload per volume
    first = client.send(upload, image, stop_after=1)
    # The browser lost its connection: where does it go on?
    assert int(client.s.head(url).headers["Upload-Offset"]) == first == upload["chunk_size"]
    wrong = client.s.patch(url, data=b"x" * 10, headers={"Upload-Offset": "0", "X-Upload-Token": upload["token"]})
    assert wrong.status_code == 409 and int(wrong.headers["Upload-Offset"]) == first
    forged = client.s.patch(url, data=b"x", headers={"Upload-Offset": str(first), "X-Upload-Token": "forged"})
    assert forged.status_code == 403 and forged.json()["code"] == "bad_token"
    client.send({**upload, "offset": first}, image)
    job = wait_for(lambda: job_done(upload["job"]["id"]), 60, message="the upload job")
    assert job.status == "succeeded", job.error
    assert host_sha256(lab_state.real_hosts[0], "lab", "t-resume.img", tmp_path) == digest


def test_a_wrong_checksum_fails_and_removes_the_partial_volume(stack, lab_pools, lab_state, tmp_path, e2e_user):
    image = tmp_path / "t-bad.img"
    make_image(image, data_mib=1, hole_mib=1)
    client = Client(stack.url, e2e_user)
    upload = client.start(lab_pools[0].pk, "t-bad.img", size=os.path.getsize(image), sha256="0" * 64).json()
    client.send(upload, image)
    job = wait_for(lambda: job_done(upload["job"]["id"]), 60, message="the upload job")
    assert (
        job.status == "failed" and job.error_code == "checksum" and "removed the partial volume t-bad.img" in job.error
    )
    assert "t-bad.img" not in virsh(lab_state.real_hosts[0], "vol-list", "--pool", "lab")


def test_download_streams_the_volume_once_per_link(stack, lab_pools, tmp_path, e2e_user):
    client = Client(stack.url, e2e_user)
    iso = Volume.objects.get(pool=lab_pools[0], name="lab-boot.iso")
    answer = client.s.post(f"{stack.url}/api/volumes/{iso.pk}/download/", headers=client.headers).json()
    got = client.s.get(stack.url + answer["url"], stream=True)
    assert got.status_code == 200 and 'filename="lab-boot.iso"' in got.headers["Content-Disposition"]
    digest = hashlib.sha256()
    for piece in got.iter_content(MiB):
        digest.update(piece)
    with open(LAB_DIR / "images" / "lab-boot.iso", "rb") as f:
        assert digest.hexdigest() == hashlib.sha256(f.read()).hexdigest()
    assert client.s.get(stack.url + answer["url"]).status_code == 403  # the link worked once
    job = wait_for(lambda: job_done(answer["job"]["id"]), 30, message="the download job")
    assert job.status == "succeeded"


def test_copy_to_another_host_keeps_holes(stack, lab_pools, lab_state, tmp_path, e2e_user):
    image = tmp_path / "t-copy.img"
    digest = make_image(image)
    client = Client(stack.url, e2e_user)
    upload = client.start(lab_pools[0].pk, "t-copy.img", size=os.path.getsize(image)).json()
    client.send(upload, image)
    assert wait_for(lambda: job_done(upload["job"]["id"]), 60, message="the upload").status == "succeeded"
    source = wait_for(lambda: Volume.objects.filter(pool=lab_pools[0], name="t-copy.img").first(), 10, message="row")
    answer = client.s.post(f"{stack.url}/api/volumes/{source.pk}/copy/", json={"target_pool": lab_pools[1].pk},
                           headers=client.headers)  # fmt: skip
    assert answer.status_code == 202, answer.text
    job = wait_for(lambda: job_done(answer.json()["id"]), 60, message="the copy")
    assert job.status == "succeeded" and job.result["sha256"] == digest and job.result["holes"] >= 12 * MiB
    lab2 = lab_state.real_hosts[1]
    assert host_sha256(lab2, "lab", "t-copy.img", tmp_path) == digest
    copied = wait_for(lambda: Volume.objects.filter(pool=lab_pools[1], name="t-copy.img").first(), 10, message="row")
    assert copied.allocation < 12 * MiB


def test_resize_and_wipe_on_a_real_host(stack, lab_pools, lab_state, e2e_user):
    client = Client(stack.url, e2e_user)
    created = client.s.post(f"{stack.url}/api/volumes/", json={"pool": lab_pools[0].pk, "name": "t-grow.qcow2",
                            "params": {"capacity": "64M"}}, headers=client.headers)  # fmt: skip
    assert wait_for(lambda: job_done(created.json()["id"]), 30, message="create").status == "succeeded"
    volume = Volume.objects.get(pool=lab_pools[0], name="t-grow.qcow2")
    shrink = client.s.post(f"{stack.url}/api/volumes/{volume.pk}/actions/", json={"action": "resize",
                           "params": {"capacity": "32M"}}, headers=client.headers)  # fmt: skip
    assert shrink.status_code == 400 and "shrinking loses data" in shrink.json()["error"]
    grow = client.s.post(f"{stack.url}/api/volumes/{volume.pk}/actions/", json={"action": "resize",
                         "params": {"capacity": "128M"}}, headers=client.headers)  # fmt: skip
    assert wait_for(lambda: job_done(grow.json()["id"]), 30, message="resize").status == "succeeded"
    assert "128.00 MiB" in virsh(lab_state.real_hosts[0], "vol-info", "--pool", "lab", "t-grow.qcow2")
    wipe = client.s.post(f"{stack.url}/api/volumes/{volume.pk}/actions/", json={"action": "wipe"},
                         headers=client.headers)  # fmt: skip
    assert wait_for(lambda: job_done(wipe.json()["id"]), 30, message="wipe").status == "succeeded"


def test_a_worker_killed_mid_upload_leaves_no_partial_volume(stack, lab_pools, lab_state, tmp_path, e2e_user):
    image = tmp_path / "t-killed.img"
    make_image(image, data_mib=8, hole_mib=8)
    client = Client(stack.url, e2e_user)
    upload = client.start(lab_pools[0].pk, "t-killed.img", size=os.path.getsize(image)).json()
    client.send(upload, image, stop_after=1)
    wait_for(lambda: "t-killed.img" in virsh(lab_state.real_hosts[0], "vol-list", "--pool", "lab"), 20, message="vol")
    stack.stop("worker", sig=signal.SIGKILL)
    time.sleep(0.5)
    stack.start_worker()  # its reaper ends what the killed one was running
    job = wait_for(lambda: job_done(upload["job"]["id"]), 60, message="the interrupted upload to end")
    assert (
        job.status == "failed" and "interrupted" in job.error and "removed the partial volume t-killed.img" in job.error
    )
    assert "t-killed.img" not in virsh(lab_state.real_hosts[0], "vol-list", "--pool", "lab")


def test_a_truncated_upload_fails_as_stalled_and_removes_its_volume(stack, lab_pools, lab_state, tmp_path, e2e_user):
    """The browser sends part of the file and goes away (VIRTFLEET_UPLOAD_STALL_TIMEOUT is 15 s here)."""
    image = tmp_path / "t-short.img"
    make_image(image, data_mib=8, hole_mib=8)
    client = Client(stack.url, e2e_user)
    upload = client.start(lab_pools[0].pk, "t-short.img", size=os.path.getsize(image)).json()
    client.send(upload, image, stop_after=1)
    job = wait_for(lambda: job_done(upload["job"]["id"]), 60, message="the stalled upload to end")
    assert job.status == "failed" and job.error_code == "stalled", job.error
    assert "no data for 15 s" in job.error and "removed the partial volume t-short.img" in job.error
    assert "t-short.img" not in virsh(lab_state.real_hosts[0], "vol-list", "--pool", "lab")


def test_a_host_lost_mid_upload_marks_the_partial_volume_and_removes_it_when_back(
    stack, lab_hosts, lab_pools, lab_state, tmp_path, e2e_user
):
    import lab
    from hosts.services import host_sync

    lab1 = lab_state.real_hosts[0]
    image = tmp_path / "t-lost.img"
    make_image(image, data_mib=8, hole_mib=8)
    client = Client(stack.url, e2e_user)
    upload = client.start(lab_pools[0].pk, "t-lost.img", size=os.path.getsize(image)).json()
    offset = client.send(upload, image, stop_after=1)
    wait_for(lambda: "t-lost.img" in virsh(lab1, "vol-list", "--pool", "lab"), 20, message="the volume")
    lab.kill_libvirtd(lab_state.base_dir, lab1.name)
    try:
        with open(image, "rb") as f:  # the next chunk reaches the worker, whose stream is gone
            f.seek(offset)
            client.s.patch(stack.url + upload["url"], data=f.read(upload["chunk_size"]),
                           headers={"Upload-Offset": str(offset), "X-Upload-Token": upload["token"]})  # fmt: skip
        job = wait_for(lambda: job_done(upload["job"]["id"]), 60, message="the upload to fail")
        assert job.status == "failed", job.status
        assert "t-lost.img could not be removed" in job.error and "marked partial" in job.error, job.error
        volume = Volume.objects.get(pool=lab_pools[0], name="t-lost.img")
        assert volume.left_by_id == job.pk  # the pool page shows it as partial, with the job
    finally:
        lab.start_libvirtd(lab_state.base_dir, lab1.name)
    assert "t-lost.img" in virsh(lab1, "vol-list", "--pool", "lab")  # nothing removed it behind our back
    host = lab_hosts[0]
    wait_for(lambda: host_sync(host=host).ok, 30, interval=1, message="lab1 to answer again")
    assert "t-lost.img" not in virsh(lab1, "vol-list", "--pool", "lab")
    assert not Volume.objects.filter(pool=lab_pools[0], name="t-lost.img").exists()
    assert job.events.filter(message__startswith="removed the partial volume t-lost.img").exists()
    assert "lab-boot.iso" in virsh(lab1, "vol-list", "--pool", "lab")  # nothing else touched


def test_a_worker_killed_mid_copy_leaves_nothing_on_the_target(stack, lab_pools, lab_state, tmp_path, e2e_user):
    image = tmp_path / "t-slow.img"
    make_image(image, data_mib=8, hole_mib=4)
    client = Client(stack.url, e2e_user)
    upload = client.start(lab_pools[0].pk, "t-slow.img", size=os.path.getsize(image)).json()
    client.send(upload, image)
    assert wait_for(lambda: job_done(upload["job"]["id"]), 60, message="the upload").status == "succeeded"
    source = wait_for(lambda: Volume.objects.filter(pool=lab_pools[0], name="t-slow.img").first(), 10, message="row")
    answer = client.s.post(
        f"{stack.url}/api/volumes/{source.pk}/copy/", json={"target_pool": lab_pools[1].pk, "bandwidth": 1}
    )  # 16 MiB of data at 1 MiB/s
    assert answer.status_code == 202, answer.text
    copy_id = answer.json()["id"]
    lab2 = lab_state.real_hosts[1]
    wait_for(lambda: Job.objects.get(pk=copy_id).progress > 0, 30, message="the copy to be under way")
    assert "t-slow.img" in virsh(lab2, "vol-list", "--pool", "lab")
    stack.stop("worker", sig=signal.SIGKILL)
    time.sleep(0.5)
    stack.start_worker()
    job = wait_for(lambda: job_done(copy_id), 60, message="the interrupted copy to end")
    assert (
        job.status == "failed" and "interrupted" in job.error and "removed the partial volume t-slow.img" in job.error
    )
    assert "t-slow.img" not in virsh(lab2, "vol-list", "--pool", "lab")
    assert "t-slow.img" in virsh(lab_state.real_hosts[0], "vol-list", "--pool", "lab")  # the source stays
