"""Create: a new VM that imports an existing disk image, from the request to the guest running and
booted, asked of Virtfleet (POST /api/vms/create/, source "import", through the web, Celery worker
and listener of a real stack) and of `virt-install --import --noautoconsole` of the same image on the
same lab host in the same run; each round, the medians and their ratio (target: Virtfleet <= 1.2 x
virt-install). A benchmark: it prints figures, it asserts no timing.

    sudo .venv/bin/python bench/create.py [--rounds 3] [--warmup 1]

What is timed, identically for both tools: from the request (Virtfleet: just before the POST is
sent; virt-install: just before the process is launched) to the end point, seen by one watcher
thread per round on its own libvirt connection to the host (its UNIX socket):

- "running": the new domain, looked up by name every 10 ms, is in libvirt's state RUNNING;
- "booted" (the end point of the ratio): the domain is running AND its serial console showed the
  lab guest's ready banner ("virtfleet lab guest <name> ready"). The console is a pty for both
  tools and is read the same way for both, whatever <log file> either adds: the watcher opens it
  (virDomainOpenConsole, forced, a blocking stream) the moment it sees the domain running and reads
  until the banner; the guest needs seconds of TCG boot before it prints anything, so nothing is
  missed. "guest boot" is booted - running.

Also shown, not timed to the end point: when virt-install exited, and when Virtfleet's job ended
(its finished_at, read from GET /api/jobs/<id>/ after the end point: nothing polls Virtfleet during
the timed part); the CPU seconds Virtfleet's processes (web, worker, listener: they share the
machine's cores with the guest) and virt-install used in the timed part, and the CPU seconds the
guest's QEMU had used when its banner came (what booting cost it, whatever else ran on the machine:
a wall-clock boot far longer for the same CPU means the guest waited for a core). Both tools reach
the host as Virtfleet's worker does: qemu+tcp on 127.0.0.1.

Each round uses its own full copy of lab-disk.qcow2 (the disk is used in place, and two VMs on one
disk are refused), made beforehand with `virsh vol-clone` and seen by Virtfleet's storage inventory
(pool-refresh → the listener → GET /api/volumes/?pool=<id>) before any timing. Both get the same
OS (linux2022: q35 for both), 128 MiB, 1 vCPU, TCG, a virtio disk, a virtio NIC on the lab network,
VNC and a pty serial; the machine, disk bus and NIC model of each are read back from the live
domain XML and printed, with the devices only one of the two has (each tool's own defaults). The tools alternate (and which goes first alternates round by round); after each round
its domain is destroyed and undefined and its copy deleted, and everything left is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import libvirt
import psutil

from bench.harness import BenchEnv, api_session, virsh
from tests.e2e.stack import wait_for

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

IMAGE = "lab-disk.qcow2"
POOL = "lab"
NETWORK = "lab"
OS = "linux2022"
MEMORY_MIB = 128
VCPUS = 1
BANNER_RE = re.compile(rb"virtfleet lab guest (\S+) ready")  # the name: SMBIOS product, else virtfleet-guest
BOOT_TIMEOUT = 180.0
VIRT_INSTALL = "/usr/bin/virt-install"
TERMINAL = ("succeeded", "failed", "cancelled")




def qemu_cpu(pidfile: Path) -> float | None:
    try:
        t = psutil.Process(int(pidfile.read_text().strip())).cpu_times()
    except (OSError, ValueError, psutil.Error):
        return None
    return t.user + t.system


class Watch(threading.Thread):
    """When the domain `name` is first seen running, then when its serial console shows the banner
    (time.perf_counter() values; None until seen)."""

    def __init__(self, uri: str, name: str, run_dir: str, timeout: float = BOOT_TIMEOUT):
        super().__init__(daemon=True)
        self.uri, self.name, self.timeout = uri, name, timeout
        self.pidfile = Path(run_dir) / "qemu" / f"{name}.pid"  # the host's libvirtd keeps it there
        self.qemu_cpu: float | None = None  # CPU seconds QEMU had used when the banner came
        self.conn = libvirt.open(uri)  # opened before the clock starts
        self.running: float | None = None
        self.banner: float | None = None
        self.banner_text = ""
        self.xml = ""
        self.error = ""
        self.tail = b""

    def run(self) -> None:
        try:
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    dom = self.conn.lookupByName(self.name)
                    if dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                        self.running = time.perf_counter()
                        break
                except libvirt.libvirtError:
                    pass  # not defined yet
                if time.monotonic() > deadline:
                    self.error = f"{self.name} was not running after {self.timeout:.0f} s"
                    return
                time.sleep(0.01)
            stream = self.conn.newStream(0)
            dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
            seen = b""
            while True:
                data = stream.recv(4096)
                if not isinstance(data, bytes) or not data:
                    self.error = f"{self.name}'s console closed before the banner"
                    break
                seen += data
                m = BANNER_RE.search(seen)
                if m:
                    self.banner = time.perf_counter()
                    self.qemu_cpu = qemu_cpu(self.pidfile)
                    self.banner_text = m.group(0).decode(errors="replace")
                    break
            self.tail = seen[-400:]
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass
            self.xml = dom.XMLDesc(0)
        except libvirt.libvirtError as exc:
            self.error = f"watching {self.name}: {exc}"
        finally:
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass

    def finish(self) -> None:
        self.join(self.timeout + 10)
        if self.is_alive():
            self.error = self.error or f"{self.name} showed no banner in {self.timeout:.0f} s"


def describe(xml: str) -> dict:
    """What the two tools may have chosen differently: machine, disk, NIC, video, other devices."""
    if not xml:
        return {}
    root = ET.fromstring(xml)  # noqa: S314 - the lab's own libvirtd
    disk = root.find("devices/disk[@device='disk']")
    nic = root.find("devices/interface/model")
    video = root.find("devices/video/model")
    devices: dict[str, int] = {}
    for el in root.find("devices"):
        if el.tag == "emulator":
            continue
        model = el.find("model")
        kind = el.get("type") or el.get("device") or ""
        what = el.get("model") or (model.get("type") if model is not None else "") or el.get("bus") or ""
        key = el.tag + (f":{kind}" if kind else "") + (f"/{what}" if what else "")
        devices[key] = devices.get(key, 0) + 1
    return {
        "machine": root.find("os/type").get("machine", ""),
        "type": root.get("type", ""),
        "memory_kib": int(root.findtext("memory") or 0),
        "vcpus": int(root.findtext("vcpu") or 0),
        "cpu": (root.find("cpu").get("mode", "") or "custom") if root.find("cpu") is not None else "",
        "disk": f"{disk.find('target').get('bus')}/{disk.find('driver').get('type')}" if disk is not None else "",
        "nic": nic.get("type", "") if nic is not None else "",
        "video": video.get("type", "") if video is not None else "",
        "devices": [k if n == 1 else f"{k} x{n}" for k, n in sorted(devices.items())],
    }




def volume_ids(env, session, pool_id: int) -> dict[str, int]:
    got = session.get(f"{env.stack.url}/api/volumes/", params={"pool": pool_id, "limit": 1000})
    got.raise_for_status()
    return {v["name"]: v["id"] for v in got.json()["results"]}


def stamp(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def virtfleet_round(env, session, host_id: int, volume_id: int, name: str, lab_host, cpu) -> dict:
    watch = Watch(lab_host.unix_uri, name, lab_host.run_dir)
    body = {"host": host_id, "name": name, "source": "import", "image_volume": volume_id, "os": OS,
            "memory_mib": MEMORY_MIB, "vcpus": VCPUS, "virttype": "qemu", "nics": [{"network": NETWORK}],
            "graphics": True, "serial": True, "start": True}  # fmt: skip
    watch.start()
    cpu0 = cpu()
    wall0, t0 = time.time(), time.perf_counter()
    answer = session.post(f"{env.stack.url}/api/vms/create/", json=body)
    accepted = time.perf_counter() - t0
    if answer.status_code != 202:
        raise RuntimeError(f"POST /api/vms/create/ answered {answer.status_code}: {answer.text[:500]}")
    job_id = answer.json()["id"]
    watch.finish()
    stack_cpu = cpu() - cpu0
    # Only now, the end point seen (or not), ask how the job went.
    job = wait_for(lambda: (lambda j: j if j["status"] in TERMINAL else None)(
        session.get(f"{env.stack.url}/api/jobs/{job_id}/").json()), 120, interval=0.2, message=f"job {job_id}")  # fmt: skip
    if job["status"] != "succeeded":
        raise RuntimeError(f"the create job {job_id} {job['status']}: {job['error']}")
    if watch.error:
        raise RuntimeError(f"Virtfleet's {name}: {watch.error}; console ended {watch.tail!r}")
    finished = stamp(job["finished_at"])
    return {
        "running_s": watch.running - t0,
        "booted_s": watch.banner - t0,
        "tool_done_s": (finished - wall0) if finished else None,  # the job's end
        "accepted_s": accepted,  # the 202
        "job_seconds": (finished - stamp(job["started_at"])) if finished and job["started_at"] else None,
        "message": job["message"],
        "banner": watch.banner_text,
        "stack_cpu_s": stack_cpu,
        "qemu_cpu_s": watch.qemu_cpu,
        "xml": describe(watch.xml),
        "raw_xml": watch.xml,
    }


def virt_install_round(lab_host, volume: str, name: str, cpu) -> dict:
    argv = [VIRT_INSTALL, "--connect", lab_host.uri, "--name", name, "--import",
            "--disk", f"vol={POOL}/{volume},bus=virtio", "--memory", str(MEMORY_MIB), "--vcpus", str(VCPUS),
            "--virt-type", "qemu", "--osinfo", OS, "--network", f"network={NETWORK},model=virtio",
            "--graphics", "vnc", "--serial", "pty", "--noautoconsole"]  # fmt: skip
    watch = Watch(lab_host.unix_uri, name, lab_host.run_dir)
    watch.start()
    cpu0 = cpu()
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=BOOT_TIMEOUT)
    exited = time.perf_counter() - t0
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = own1.ru_utime - own0.ru_utime + own1.ru_stime - own0.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"virt-install exited {proc.returncode}: {out[-1500:]}")
    watch.finish()
    stack_cpu = cpu() - cpu0
    if watch.error:
        raise RuntimeError(f"virt-install's {name}: {watch.error}; console ended {watch.tail!r}")
    return {
        "running_s": watch.running - t0,
        "booted_s": watch.banner - t0,
        "tool_done_s": exited,  # the process's exit
        "virt_install_cpu_s": own,
        "message": " ".join(line.strip() for line in out.splitlines() if line.strip())[-300:],
        "banner": watch.banner_text,
        "stack_cpu_s": stack_cpu,
        "qemu_cpu_s": watch.qemu_cpu,
        "xml": describe(watch.xml),
        "raw_xml": watch.xml,
    }


def remove_domain(uri: str, name: str) -> None:
    virsh(uri, "destroy", name, check=False)
    virsh(uri, "undefine", name, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each tool")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds of each tool first")
    args = parser.parse_args()

    with BenchEnv("create", real_hosts=1, vms_per_host=0) as env:
        env.sync_all()
        env.stack.start_web()
        env.stack.start_worker()
        env.stack.start_listener()
        env.wait_watched()
        from hosts.models import Host
        from storage.models import StoragePool

        lab1 = env.lab_state.real_hosts[0]
        host = Host.objects.get(name=lab1.name)
        pool = StoragePool.objects.get(host=host, name=POOL)
        local = lab1.unix_uri  # the watcher's and the cleanup's connection
        session = api_session("bench-create")
        load_before = [round(x, 2) for x in os.getloadavg()]
        stack = [psutil.Process(p.pid) for p in env.stack.procs.values()]

        def cpu() -> float:
            """CPU seconds used so far by Virtfleet's processes (web, worker, listener and their children)."""
            total = 0.0
            for proc in stack:
                for p in (proc, *proc.children(recursive=True)):
                    try:
                        t = p.cpu_times()
                        total += t.user + t.system
                    except psutil.NoSuchProcess:
                        pass
            return total

        total = args.warmup + args.rounds
        plan = [(i, tool) for i in range(total)
                for tool in (("virtfleet", "virt-install") if i % 2 == 0 else ("virt-install", "virtfleet"))]  # fmt: skip
        names = {(i, tool): f"bench-{'vf' if tool == 'virtfleet' else 'vi'}-{i}" for i, tool in plan}
        domains: list[str] = []
        volumes: list[str] = []
        try:
            # The copies, outside the timed part, and Virtfleet's inventory seeing them.
            started = time.monotonic()
            for key in plan:
                virsh(local, "vol-clone", "--pool", POOL, IMAGE, f"{names[key]}.qcow2")
                volumes.append(f"{names[key]}.qcow2")
            virsh(local, "pool-refresh", POOL)
            ids = wait_for(lambda: (lambda seen: seen if set(volumes) <= set(seen) else None)(
                volume_ids(env, session, pool.pk)), 60, interval=0.25, message="Virtfleet to list the copies")  # fmt: skip
            print(
                f"{len(volumes)} copies of {IMAGE} made and listed by Virtfleet in {time.monotonic() - started:.1f} s"
            )

            results: dict[str, list[dict]] = {"virtfleet": [], "virt-install": []}
            for i, tool in plan:
                name = names[(i, tool)]
                volume = f"{name}.qcow2"
                domains.append(name)
                if tool == "virtfleet":
                    r = virtfleet_round(env, session, host.pk, ids[volume], name, lab1, cpu)
                else:
                    r = virt_install_round(lab1, volume, name, cpu)
                timed = i >= args.warmup
                label = f"round {i - args.warmup + 1}" if timed else f"warm-up {i + 1}"
                done = "job ended" if tool == "virtfleet" else "exited"
                own = f", virt-install {r['virt_install_cpu_s']:.2f} s" if "virt_install_cpu_s" in r else ""
                print(f"{label:>9}  {tool:<12} running {r['running_s']:6.2f} s  booted {r['booted_s']:6.2f} s  "
                      f"(guest boot {r['booted_s'] - r['running_s']:.2f} s; {done} at {r['tool_done_s']:.2f} s; "
                      f"CPU: the guest's QEMU {r['qemu_cpu_s'] or 0:.2f} s, Virtfleet's processes {r['stack_cpu_s']:.2f} s{own})", flush=True)  # fmt: skip
                if timed:
                    results[tool].append(r)
                (env.dir / f"{name}.xml").write_text(r.pop("raw_xml"))  # the live XML, for comparison
                remove_domain(local, name)
                wait_for(lambda n=name: virsh(local, "dominfo", n, check=False).returncode != 0, 30,
                         message=f"{name} to be gone")  # fmt: skip
                domains.remove(name)
                virsh(local, "vol-delete", "--pool", POOL, volume)
                volumes.remove(volume)
                time.sleep(1.0)  # let the listener and the host settle before the next round
        finally:
            for name in domains:
                remove_domain(local, name)
            for volume in volumes:
                virsh(local, "vol-delete", "--pool", POOL, volume, check=False)

        def med(tool: str, key: str) -> float:
            return statistics.median(r[key] for r in results[tool])

        vf, vi = results["virtfleet"], results["virt-install"]
        data = {
            "rounds": args.rounds,
            "warmup_rounds": args.warmup,
            "end_point": "domain RUNNING in libvirt and the lab guest's ready banner on its serial console "
            "(pty, read through virDomainOpenConsole); ratio on that end point",
            "image": f"{POOL}/{IMAGE} (a full copy per round)",
            "virtfleet_booted_seconds": [round(r["booted_s"], 3) for r in vf],
            "virt_install_booted_seconds": [round(r["booted_s"], 3) for r in vi],
            "virtfleet_running_seconds": [round(r["running_s"], 3) for r in vf],
            "virt_install_running_seconds": [round(r["running_s"], 3) for r in vi],
            "virtfleet_guest_boot_seconds": [round(r["booted_s"] - r["running_s"], 3) for r in vf],
            "virt_install_guest_boot_seconds": [round(r["booted_s"] - r["running_s"], 3) for r in vi],
            "load_average_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]],
            "virtfleet_stack_cpu_seconds": [round(r["stack_cpu_s"], 3) for r in vf],
            "virt_install_stack_cpu_seconds": [round(r["stack_cpu_s"], 3) for r in vi],
            "virtfleet_qemu_cpu_to_banner_seconds": [r["qemu_cpu_s"] and round(r["qemu_cpu_s"], 2) for r in vf],
            "virt_install_qemu_cpu_to_banner_seconds": [r["qemu_cpu_s"] and round(r["qemu_cpu_s"], 2) for r in vi],
            "virt_install_process_cpu_seconds": [round(r["virt_install_cpu_s"], 3) for r in vi],
            "virtfleet_job_end_seconds": [round(r["tool_done_s"], 3) for r in vf],
            "virtfleet_202_seconds": [round(r["accepted_s"], 3) for r in vf],
            "virtfleet_job_run_seconds": [r["job_seconds"] and round(r["job_seconds"], 3) for r in vf],
            "virt_install_exit_seconds": [round(r["tool_done_s"], 3) for r in vi],
            "virtfleet_median_s": round(med("virtfleet", "booted_s"), 3),
            "virt_install_median_s": round(med("virt-install", "booted_s"), 3),
            "ratio": round(med("virtfleet", "booted_s") / med("virt-install", "booted_s"), 3),
            "virtfleet_running_median_s": round(med("virtfleet", "running_s"), 3),
            "virt_install_running_median_s": round(med("virt-install", "running_s"), 3),
            "running_ratio": round(med("virtfleet", "running_s") / med("virt-install", "running_s"), 3),
            "virtfleet_domain": vf[0]["xml"] if vf else {},
            "virt_install_domain": vi[0]["xml"] if vi else {},
            "virtfleet_job_message": vf[0]["message"] if vf else "",
            "virt_install_output": vi[0]["message"] if vi else "",
            "banners": sorted({r["banner"] for r in vf + vi}),
        }
        ours, theirs = (
            set(data["virtfleet_domain"].get("devices", ())),
            set(data["virt_install_domain"].get("devices", ())),
        )
        data["devices_only_virtfleet"] = sorted(ours - theirs)
        data["devices_only_virt_install"] = sorted(theirs - ours)
        path = env.write_result(data)
        print(json.dumps(data, indent=2))
        print()

        def cells(running: float, booted: float) -> str:
            return f"{running:7.2f} {booted:7.2f} {booted - running:6.2f}"

        print(f"{'seconds':9}  {'Virtfleet':^22}  {'virt-install':^22}")
        print(f"{'':9}  {'running  booted (boot)':>22}  {'running  booted (boot)':>22}")
        for k, (a, b) in enumerate(zip(vf, vi, strict=True), 1):
            print(f"round {k:<3}  {cells(a['running_s'], a['booted_s'])}  {cells(b['running_s'], b['booted_s'])}")
        print(f"{'median':9}  {cells(data['virtfleet_running_median_s'], data['virtfleet_median_s'])}  "
              f"{cells(data['virt_install_running_median_s'], data['virt_install_median_s'])}"
              "   (boot: booted - running of the medians)")  # fmt: skip
        print(f"create (import {IMAGE}) → running and booted (banner on the serial console): Virtfleet "
              f"{data['virtfleet_median_s']:.2f} s, virt-install {data['virt_install_median_s']:.2f} s, ratio "
              f"{data['ratio']:.2f} (target ≤ 1.2); → domain running only: ratio {data['running_ratio']:.2f}; "
              f"machine {data['virtfleet_domain'].get('machine')} vs {data['virt_install_domain'].get('machine')}; "
              f"results in {path}")  # fmt: skip
        print(f"devices only Virtfleet's VM has: {', '.join(data['devices_only_virtfleet']) or 'none'}; only "
              f"virt-install's: {', '.join(data['devices_only_virt_install']) or 'none'} (live XMLs in {env.dir})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
