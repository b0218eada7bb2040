"""Clone: a shut-off VM with a 1 GiB qcow2 disk full of real data, cloned by Virtfleet (POST
/api/vms/<uuid>/clone/ through the web, Celery worker and listener of a real stack, until the job
succeeded) and by `virt-clone --connect <lab host> --original <vm> --auto-clone` in the same run,
alternating round by round; the medians side by side and their ratio (target: Virtfleet <= 1.1 x
virt-clone), and the time of a linked clone (a qcow2 overlay; the source frozen on its own overlay).
A benchmark: it prints figures, it asserts no timing.

    sudo .venv/bin/python bench/clone.py [--rounds 3] [--warmup 1] [--images DIR]

The disk: 1 GiB of random bytes (incompressible, no zero clusters) written to a raw file here,
converted to qcow2 here with qemu-img, and uploaded into a volume of the lab host's pool (virsh
vol-upload): the copies really move 1 GiB. The source is defined on the host with virsh, never started.

What is timed: Virtfleet, from just before the POST to the job's status read as succeeded (GET
/api/jobs/<id>/ every 50 ms); virt-clone, from the launch of the process to its exit. Both end with
the clone defined and its disk copied; both copy by libvirt's createXMLFrom in the source's pool
(virt-clone reaches the host over qemu+tcp, as Virtfleet's worker does: virtinst uses the storage
API for a disk that is a pool's volume, so it needs no local path; checked below by reading back
the clone's disk). After each round the clone is undefined and its volume deleted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.harness import BenchEnv, api_session, virsh
from tests.e2e.stack import wait_for

POOL = "lab"
SOURCE = "bench-src"
SIZE = 2**30
VIRT_CLONE = "/usr/bin/virt-clone"
TERMINAL = ("succeeded", "failed", "cancelled")






def make_source(local: str, work: Path) -> None:
    """The 1 GiB filled qcow2 volume and the VM using it, on the host (outside any timing)."""
    raw, qcow2 = work / "filled.raw", work / "filled.qcow2"
    with open(raw, "wb") as f:
        for _ in range(SIZE // 2**24):
            f.write(os.urandom(2**24))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    raw.unlink()
    virsh(local, "vol-create-as", POOL, f"{SOURCE}.qcow2", str(SIZE), "--format", "qcow2")
    virsh(local, "vol-upload", "--pool", POOL, f"{SOURCE}.qcow2", str(qcow2))
    qcow2.unlink()
    virsh(local, "pool-refresh", POOL)
    xml = f"""<domain type='qemu'><name>{SOURCE}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='{POOL}' volume='{SOURCE}.qcow2'/><target dev='vda' bus='virtio'/></disk>
<interface type='network'><source network='lab'/><model type='virtio'/></interface>
<serial type='pty'><log file='/var/log/libvirt/qemu/{SOURCE}.serial.log' append='off'/><target port='0'/></serial>
<console type='pty'/><graphics type='vnc' autoport='yes' listen='127.0.0.1'/></devices></domain>"""
    path = work / "src.xml"
    path.write_text(xml)
    virsh(local, "define", str(path))


def clone_volumes(local: str, name: str) -> list[str]:
    lines = virsh(local, "vol-list", "--pool", POOL).stdout.splitlines()
    return [line.split()[0] for line in lines if line.strip() and line.split()[0].startswith(name)]


def remove_clone(local: str, name: str) -> None:
    virsh(local, "undefine", name, "--nvram", check=False)
    for volume in clone_volumes(local, name + "-") + clone_volumes(local, name + "."):
        virsh(local, "vol-delete", "--pool", POOL, volume, check=False)


def virtfleet_round(env, session, vm_uuid: str, name: str, **params) -> dict:
    base = env.stack.url
    started = time.monotonic()
    response = session.post(f"{base}/api/vms/{vm_uuid}/clone/", json={"name": name, **params}, timeout=30)
    accepted = time.monotonic() - started
    response.raise_for_status()
    job_id = response.json()["id"]
    while True:
        job = session.get(f"{base}/api/jobs/{job_id}/", timeout=10).json()
        if job["status"] in TERMINAL:
            break
        time.sleep(0.05)
    seconds = time.monotonic() - started
    if job["status"] != "succeeded":
        raise SystemExit(f"the Virtfleet clone {name} did not succeed: {job.get('error') or job.get('message')}")
    return {"seconds": seconds, "accepted_s": accepted, "message": job["message"]}


def virt_clone_round(uri: str, name: str) -> dict:
    started = time.monotonic()
    done = subprocess.run([VIRT_CLONE, "--connect", uri, "--original", SOURCE, "--name", name, "--auto-clone"],
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"virt-clone failed: {done.stderr.strip() or done.stdout.strip()}")
    return {"seconds": seconds, "message": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""}


def disk_of(local: str, name: str) -> str:
    out = virsh(local, "domblklist", name, "--details").stdout.splitlines()
    return next((line.split()[-1] for line in out if " disk " in f" {line} "), "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each tool (at least 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds of each tool first")
    parser.add_argument("--images", default=os.environ.get("VIRTFLEET_LAB_IMAGES", ""),
                        help="a prepared lab images directory to reuse (kernel, initramfs, disks)")  # fmt: skip
    args = parser.parse_args()
    rounds = max(3, args.rounds)
    if not Path(VIRT_CLONE).exists():
        raise SystemExit("virt-clone is missing: apt-get install --no-install-recommends virtinst")
    images = Path(args.images) if args.images else None
    lab_images = Path(__file__).resolve().parent.parent / "var" / "bench" / "clone" / "lab" / "images"
    if images and images.exists() and not lab_images.exists():
        lab_images.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(images, lab_images)

    with BenchEnv("clone", real_hosts=1, vms_per_host=0) as env, tempfile.TemporaryDirectory() as tmp:
        env.sync_all()
        env.stack.start_web()
        env.stack.start_worker()
        env.stack.start_listener()
        env.wait_watched()
        from vms.models import VM

        lab1 = env.lab_state.real_hosts[0]
        local, remote = lab1.unix_uri, lab1.uri
        started = time.monotonic()
        make_source(local, Path(tmp))
        vm = wait_for(lambda: VM.objects.filter(name=SOURCE).exclude(xml="").first(), 30,
                      message="Virtfleet to see the source VM")  # fmt: skip
        info = virsh(local, "vol-info", "--pool", POOL, f"{SOURCE}.qcow2", "--bytes").stdout
        print(
            f"source {SOURCE}: 1 GiB qcow2 of random data made and uploaded in {time.monotonic() - started:.1f} s\n{info}"
        )
        session = api_session("bench-clone")
        results: dict[str, list[float]] = {"virtfleet": [], "virt-clone": []}
        messages: dict[str, str] = {}
        total = args.warmup + rounds
        names: list[str] = []
        try:
            for i in range(total):
                order = ("virtfleet", "virt-clone") if i % 2 == 0 else ("virt-clone", "virtfleet")
                for tool in order:
                    name = f"bench-{'vf' if tool == 'virtfleet' else 'vc'}-{i}"
                    names.append(name)
                    r = virtfleet_round(env, session, str(vm.uuid), name) if tool == "virtfleet" else \
                        virt_clone_round(remote, name)  # fmt: skip
                    disk = disk_of(local, name)
                    assert disk and disk != f"/var/lib/libvirt/images/{SOURCE}.qcow2", disk
                    copied = virsh(local, "vol-info", disk, "--bytes").stdout
                    alloc = next(
                        (int(line.split()[1]) for line in copied.splitlines() if line.startswith("Allocation")), 0
                    )
                    timed = i >= args.warmup
                    label = f"round {i - args.warmup + 1}" if timed else f"warm-up {i + 1}"
                    print(
                        f"{label:>9}  {tool:<10} {r['seconds']:6.2f} s  ({alloc / 2**20:.0f} MiB on disk: {disk})",
                        flush=True,
                    )
                    if timed:
                        results[tool].append(r["seconds"])
                    messages[tool] = r["message"]
                    remove_clone(local, name)
                    names.remove(name)
                    time.sleep(1.0)  # let the listener settle before the next round
            linked = []
            original = virsh(local, "dumpxml", "--inactive", "--security-info", SOURCE).stdout
            xml_path = Path(tmp) / "original.xml"
            xml_path.write_text(original)
            for i in range(rounds):
                name = f"bench-ln-{i}"
                names.append(name)
                r = virtfleet_round(env, session, str(vm.uuid), name, mode="linked", freeze_source=True)
                linked.append(r["seconds"])
                messages["linked"] = r["message"]
                print(f"  linked {i + 1}  virtfleet  {r['seconds']:6.2f} s  ({r['message']})", flush=True)
                remove_clone(local, name)
                names.remove(name)
                virsh(local, "define", str(xml_path))  # the source back on its own disk
                for volume in clone_volumes(local, f"{SOURCE}-vda-top"):
                    virsh(local, "vol-delete", "--pool", POOL, volume)
                time.sleep(1.0)
        finally:
            for name in names:
                remove_clone(local, name)
            virsh(local, "undefine", SOURCE, check=False)
            for volume in clone_volumes(local, SOURCE):
                virsh(local, "vol-delete", "--pool", POOL, volume, check=False)

        vf, vc = statistics.median(results["virtfleet"]), statistics.median(results["virt-clone"])
        data = {
            "rounds": rounds,
            "warmup_rounds": args.warmup,
            "disk": "1 GiB qcow2 of random data (incompressible), in the lab host's dir pool",
            "end_point": "Virtfleet: request → job succeeded (clone defined, disk copied by createXMLFrom); "
            "virt-clone --auto-clone: process start → exit",
            "virtfleet_seconds": [round(s, 3) for s in results["virtfleet"]],
            "virt_clone_seconds": [round(s, 3) for s in results["virt-clone"]],
            "virtfleet_median_s": round(vf, 3),
            "virt_clone_median_s": round(vc, 3),
            "ratio": round(vf / vc, 3),
            "linked_seconds": [round(s, 3) for s in linked],
            "linked_median_s": round(statistics.median(linked), 3),
            "virtfleet_job_message": messages.get("virtfleet", ""),
            "virt_clone_output": messages.get("virt-clone", ""),
            "linked_job_message": messages.get("linked", ""),
        }
        path = env.write_result(data)
        print()
        print(f"{'':>24}{'Virtfleet':>12}{'virt-clone':>12}")
        print(f"{'full clone, median':>24}{vf:>11.2f}s{vc:>11.2f}s   ratio {vf / vc:.2f} (target <= 1.1)")
        print(f"{'linked clone, median':>24}{statistics.median(linked):>11.2f}s")
        print(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
