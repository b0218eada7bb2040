"""Migration: the same idle guest migrated back and forth N times by Virtfleet (a job through the
real Celery worker) and N times by `virsh migrate --live --p2p` in the same run; medians and their
ratio (target: Virtfleet <= 1.2 x virsh), and the progress update rate a browser client sees.

    sudo .venv/bin/python bench/migration.py [--rounds 10] [--bandwidth 20]

Virtfleet's time is what an operator waits: from the request (which runs the pre-flight checks)
to the job's end (VM row moved, job succeeded). virsh's is the command's wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BenchEnv
from tests.e2e.stack import wait_for


def virsh_migrate(src, dst, guest: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            "virsh",
            "-q",
            "-c",
            src.uri,
            "migrate",
            "--live",
            "--p2p",
            "--persistent",
            "--undefinesource",
            guest,
            dst.uri,
            "tcp://127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def virtfleet_migrate(vm_uuid: str, target, params: dict | None = None) -> tuple[float, object]:
    from jobs.models import Job
    from migration.services import migration_request
    from vms.models import VM

    vm = VM.objects.select_related("host").get(uuid=vm_uuid)
    started = time.perf_counter()
    job = migration_request(vm=vm, target=target, params=params or {})
    done = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=["succeeded", "failed", "cancelled"]).first(), 180,
                    interval=0.01, message="the migration job")  # fmt: skip
    took = time.perf_counter() - started
    assert done.status == "succeeded", done.error
    return took, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--bandwidth", type=int, default=20, help="MiB/s for the progress-rate run")
    args = parser.parse_args()

    with BenchEnv("migration", real_hosts=2, vms_per_host=0) as env:
        env.sync_all()
        stack = env.stack
        stack.start_web()
        stack.start_worker()
        from hosts.models import Host
        from vms.models import VM

        lab1, lab2 = env.lab_state.real_hosts
        h1, h2 = Host.objects.get(name=lab1.name), Host.objects.get(name=lab2.name)
        guest = f"{lab1.name}-vm1"
        uuid = str(VM.objects.get(name=guest).uuid)
        virtfleet_migrate(uuid, h2)  # warm-up: the first migration after a host start is slow (LAB.md)
        virtfleet_migrate(uuid, h1)

        ours, jobs_s, theirs = [], [], []
        for i in range(args.rounds):
            took, job = virtfleet_migrate(uuid, h2 if i % 2 == 0 else h1)
            ours.append(took)
            jobs_s.append(job.result["seconds"])
        where = VM.objects.get(uuid=uuid).host
        src, dst = (lab1, lab2) if where.pk == h1.pk else (lab2, lab1)
        for i in range(args.rounds):
            theirs.append(virsh_migrate(src, dst, guest) if i % 2 == 0 else virsh_migrate(dst, src, guest))
        env.sync_all()

        # Progress as a browser sees it: a WebSocket client on the VM's topic during a slow migration.
        from websockets.sync.client import connect

        ws = connect(f"ws://127.0.0.1:{stack.http_port}/ws/live/",
                     additional_headers={"Cookie": env.session_cookie(), "Origin": stack.url})  # fmt: skip
        ws.recv(timeout=10)
        ws.send(json.dumps({"action": "subscribe", "topics": [f"vm:{uuid}"]}))
        ws.recv(timeout=10)
        stamps: list[float] = []

        def listen():
            try:
                for raw in ws:
                    if json.loads(raw).get("type") == "migration.progress":
                        stamps.append(time.perf_counter())
            except Exception:
                pass

        threading.Thread(target=listen, daemon=True).start()
        vm = VM.objects.select_related("host").get(uuid=uuid)
        target = h2 if vm.host_id == h1.pk else h1
        slow, _ = virtfleet_migrate(uuid, target, {"bandwidth_mibs": args.bandwidth})
        time.sleep(0.5)
        ws.close()
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0

        med_ours, med_theirs = statistics.median(ours), statistics.median(theirs)
        result = {
            "rounds": args.rounds,
            "virtfleet_seconds": [round(x, 3) for x in ours],
            "virtfleet_libvirt_part_seconds": jobs_s,
            "virsh_seconds": [round(x, 3) for x in theirs],
            "virtfleet_median_s": round(med_ours, 3),
            "virsh_median_s": round(med_theirs, 3),
            "ratio": round(med_ours / med_theirs, 3),
            "progress_run_seconds": round(slow, 2),
            "progress_run_bandwidth_mibs": args.bandwidth,
            "progress_updates_seen": len(stamps),
            "progress_updates_per_second": round(rate, 2),
        }
        path = env.write_result(result)
        print(json.dumps(result, indent=2))
        print(f"migration median: Virtfleet {med_ours:.2f} s, virsh {med_theirs:.2f} s, ratio {med_ours / med_theirs:.2f}; "
              f"{len(stamps)} progress updates at {rate:.1f}/s in a browser client; results in {path}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
