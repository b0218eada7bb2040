"""Storage: a 2 GiB image, half of it holes, uploaded to a real lab host through the browser's path
(HTTP chunks → daphne → Redis → a Celery worker → virStorageVolUpload) and by `virsh vol-upload
--sparse` of the same file in the same run; their throughput and its ratio (target ≥ 0.8), the
allocation on the host after each (the holes must stay holes), and the RSS growth of the web and
worker processes during the upload (target < 64 MiB whatever the file's size).

    sudo .venv/bin/python bench/storage.py [--gib 2] [--rounds 2]

Virtfleet's time is what the browser waits: from asking for the upload to its job's end (the
checksum computed and the volume re-read). virsh's is the command's wall time, over the host's URI
as Virtfleet's worker uses it (qemu+tcp on 127.0.0.1). The "browser" here is a Python client that
speaks storage.js's protocol (storage/uploader.py) and shares the machine's cores with everything
else, as virsh does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench.harness import BenchEnv, api_session, rss_mib
from storage.uploader import send
from tests.e2e.stack import wait_for

MiB = 2**20
SEGMENT = 64 * MiB  # data and holes alternate in segments of this size


def make_image(path: Path, size: int) -> str:
    """``size`` bytes: 64 MiB of random data, 64 MiB of zeros (a hole on disk), and so on."""
    digest = hashlib.sha256()
    block = os.urandom(SEGMENT)
    with open(path, "wb") as f:
        for offset in range(0, size, 2 * SEGMENT):
            data = block[: min(SEGMENT, size - offset)]
            f.write(data)
            digest.update(data)
            hole = min(SEGMENT, size - offset - len(data))
            if hole > 0:
                f.seek(hole, os.SEEK_CUR)
                digest.update(bytes(hole))
        f.truncate(size)
    return digest.hexdigest()


def allocation(uri: str, pool: str, name: str) -> int:
    out = subprocess.run(["virsh", "-q", "-c", uri, "vol-info", "--bytes", "--pool", pool, name], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return next(int(line.split()[1]) for line in out.splitlines() if line.startswith("Allocation"))


def virsh_upload(uri: str, path: Path, name: str) -> float:
    subprocess.run(["virsh", "-q", "-c", uri, "vol-delete", "--pool", "lab", name], capture_output=True)
    subprocess.run(["virsh", "-q", "-c", uri, "vol-create-as", "lab", name, str(path.stat().st_size), "--format", "raw",
                    "--allocation", "0"], check=True, capture_output=True)  # fmt: skip
    started = time.perf_counter()
    subprocess.run(["virsh", "-q", "-c", uri, "vol-upload", "--sparse", "--pool", "lab", name, str(path)], check=True,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - started


class Sampler(threading.Thread):
    """The largest RSS of some processes while it runs, sampled every 0.1 s."""

    def __init__(self, pids: dict[str, int]):
        super().__init__(daemon=True)
        self.pids, self.peak, self.stop = pids, {name: 0.0 for name in pids}, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            for name, pid in self.pids.items():
                try:
                    self.peak[name] = max(self.peak[name], rss_mib(pid))
                except psutil.NoSuchProcess:
                    return




def virtfleet_upload(env, session, pool_id: int, path: Path, name: str, digest: str) -> tuple[float, dict]:
    """The upload as storage.js does it: chunks in order, a chunk of zeros sent as its length."""
    from jobs.models import Job

    base = env.stack.url
    size = path.stat().st_size
    started = time.perf_counter()
    answer = session.post(base + "/api/uploads/", json={"pool": pool_id, "name": name,
                          "params": {"size": size, "sha256": digest}})  # fmt: skip
    assert answer.status_code == 202, answer.text
    upload = answer.json()
    with open(path, "rb") as f:
        send(session, base, upload, f, size)
    job = wait_for(lambda: Job.objects.filter(pk=upload["job"]["id"], status__in=["succeeded", "failed"]).first(), 600,
                   interval=0.02, message="the upload job")  # fmt: skip
    took = time.perf_counter() - started
    assert job.status == "succeeded", job.error
    return took, job.result


def virtfleet_download(env, session, volume_id: int, digest: str) -> float:
    """The download as a browser does it: ask for it, then GET the stream (checked: sha256)."""
    started = time.perf_counter()
    answer = session.post(f"{env.stack.url}/api/volumes/{volume_id}/download/")
    assert answer.status_code == 202, answer.text
    got = session.get(env.stack.url + answer.json()["url"], stream=True)
    assert got.status_code == 200, got.text[:300]
    h = hashlib.sha256()
    for piece in got.iter_content(2**20):
        h.update(piece)
    took = time.perf_counter() - started
    assert h.hexdigest() == digest, "the download is not the volume"
    return took


def virsh_download(uri: str, name: str, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["virsh", "-q", "-c", uri, "vol-download", "--sparse", "--pool", "lab", name, str(out)], check=True,
                   capture_output=True)  # fmt: skip
    took = time.perf_counter() - started
    out.unlink()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    size = int(args.gib * 2**30)

    with BenchEnv("storage", real_hosts=1, vms_per_host=0) as env:
        env.sync_all()
        env.stack.start_web()
        env.stack.start_worker()
        from storage.models import StoragePool, Volume

        lab1 = env.lab_state.real_hosts[0]
        pool = StoragePool.objects.get(host__name=lab1.name, name="lab")
        image = env.dir / "image.raw"
        digest = make_image(image, size)
        print(f"image: {size / 2**30:.1f} GiB, {os.stat(image).st_blocks * 512 / 2**30:.2f} GiB of it data")

        session = api_session("bench")
        theirs, ours, rss, down_ours, down_theirs = [], [], [], [], []
        for i in range(args.rounds):
            theirs.append(virsh_upload(lab1.uri, image, f"virsh-{i}.raw"))
            virsh_alloc = allocation(lab1.unix_uri, "lab", f"virsh-{i}.raw")
            pids = {"web": env.stack.procs["web"].pid, "worker": env.stack.procs["worker"].pid}
            before = {name: rss_mib(pid) for name, pid in pids.items()}
            sampler = Sampler(pids)
            sampler.start()
            took, result = virtfleet_upload(env, session, pool.pk, image, f"virtfleet-{i}.raw", digest)
            sampler.stop.set()
            sampler.join()
            ours.append(took)
            rss.append({name: round(sampler.peak[name] - before[name], 1) for name in pids})
            ours_alloc = allocation(lab1.unix_uri, "lab", f"virtfleet-{i}.raw")
            name = f"virtfleet-{i}.raw"
            volume = wait_for(lambda n=name: Volume.objects.filter(pool=pool, name=n).first(), 30, message="row")
            down_ours.append(virtfleet_download(env, session, volume.pk, digest))
            down_theirs.append(virsh_download(lab1.uri, f"virtfleet-{i}.raw", env.dir / "back.raw"))
            subprocess.run(
                ["virsh", "-q", "-c", lab1.unix_uri, "vol-delete", "--pool", "lab", f"virsh-{i}.raw"], check=True
            )
            subprocess.run(["virsh", "-q", "-c", lab1.unix_uri, "vol-delete", "--pool", "lab", f"virtfleet-{i}.raw"],
                           check=True)  # fmt: skip
        best_ours, best_theirs = min(ours), min(theirs)
        mib = size / MiB
        data = {
            "size_bytes": size,
            "rounds": args.rounds,
            "virtfleet_seconds": [round(x, 2) for x in ours],
            "virsh_seconds": [round(x, 2) for x in theirs],
            "virtfleet_mib_s": round(mib / best_ours, 1),
            "virsh_mib_s": round(mib / best_theirs, 1),
            "ratio": round(best_theirs / best_ours, 3),
            "virtfleet_allocation_bytes": ours_alloc,
            "virsh_allocation_bytes": virsh_alloc,
            "rss_growth_mib": rss,
            "holes_bytes": result.get("holes"),
            "download_virtfleet_seconds": [round(x, 2) for x in down_ours],
            "download_virsh_seconds": [round(x, 2) for x in down_theirs],
            "download_virtfleet_mib_s": round(mib / min(down_ours), 1),
            "download_virsh_mib_s": round(mib / min(down_theirs), 1),
        }
        path = env.write_result(data)
        print(json.dumps(data, indent=2))
        growth = max(max(r.values()) for r in rss)
        print(f"upload of {size / 2**30:.1f} GiB (half holes): Virtfleet {mib / best_ours:.0f} MiB/s, virsh vol-upload "
              f"--sparse {mib / best_theirs:.0f} MiB/s, ratio {best_theirs / best_ours:.2f} (target ≥ 0.8); on disk "
              f"{ours_alloc / MiB:.0f} MiB vs virsh {virsh_alloc / MiB:.0f} MiB; RSS growth ≤ {growth:.0f} MiB (target < 64); "
              f"results in {path}")  # fmt: skip
        print(f"download of the same volume: Virtfleet {mib / min(down_ours):.0f} MiB/s (every byte, holes as zeros), "
              f"virsh vol-download --sparse {mib / min(down_theirs):.0f} MiB/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
