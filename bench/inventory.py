"""Inventory: resync of one host of 50 VMs, and a full resync of every host by the listener.

    sudo .venv/bin/python bench/inventory.py [--hosts 20] [--vms 50]

Targets (issue "Scale", with 200 hosts): one host of 50 VMs <= 200 ms; all 200 hosts <= 20 s
after a listener restart (bench/scale.py runs it at that size).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BenchEnv, summary_ms


def one_host_resync(repeats: int = 20) -> dict:
    """host_sync of one host (its whole inventory re-read and compared), ``repeats`` times."""
    from hosts.models import Host
    from hosts.services import host_sync

    host = Host.objects.order_by("pk").first()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = host_sync(host=host)
        times.append(time.perf_counter() - started)
        assert result.ok, result.error
    return {"host": host.name, "domains": result.domains, **summary_ms(times)}


def listener_full_resync(env, stack, name: str = "listener-resync", count: int = 1) -> float:
    """Start ``count`` listeners with every host registered; seconds until all hosts are resynced."""
    from django.utils import timezone

    from hosts.models import Host
    from tests.e2e.stack import wait_for

    mark = timezone.now()
    started = time.perf_counter()
    for i in range(count):
        stack.start_listener(f"{name}{i}" if count > 1 else name, ttl=15)
    total = Host.objects.count()
    wait_for(lambda: Host.objects.filter(last_sync__gte=mark, state="connected").count() == total, 600, interval=0.05,
             message="every host to be resynced")  # fmt: skip
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--vms", type=int, default=50)
    args = parser.parse_args()
    with BenchEnv("inventory", fake_hosts=args.hosts, vms_per_host=args.vms) as env:
        first = env.sync_all()
        one = one_host_resync()
        full = listener_full_resync(env, env.stack)
        result = {
            "hosts": args.hosts,
            "vms_per_host": args.vms,
            "lab_up_seconds": round(env.lab_seconds, 2),
            "first_sync_all_seconds_8_threads": round(first, 2),
            "one_host_resync": one,
            "listener_full_resync_seconds": round(full, 2),
        }
        path = env.write_result(result)
        print(json.dumps(result, indent=2))
        print(
            f"one host of {one['domains']} VMs: p50 {one['p50_ms']} ms; listener resync of {args.hosts} hosts: {full:.1f} s; {path}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
