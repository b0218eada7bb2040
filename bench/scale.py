"""The scale run: 200 fake hosts x 50 VMs (10,000 VMs) watched by the listener(s).

    sudo .venv/bin/python bench/scale.py [--hosts 200] [--vms 50] [--listeners 1] [--events 3000 --rate 100]

Measures, in one environment:
- lab up time for the fake hosts;
- listener memory per watched host (slope between half and all hosts watched) and in total;
- full resync of every host after a listener restart (target <= 20 s) and one host of 50 VMs
  (target <= 200 ms);
- fleet page and API list with 10,000 VMs (target p95 <= 150 ms), over HTTP to daphne;
- event latency while every host is watched and events arrive at 100/s (target p99 <= 500 ms);
- worker and web memory at rest.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.events import measure_latency, watch_in_two_halves
from bench.harness import BenchEnv, rss_mib, summary_ms
from bench.inventory import listener_full_resync, one_host_resync
from bench.pages import URLS, time_urls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--listeners", type=int, default=1)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()

    import libvirt

    libvirt.registerErrorHandler(lambda *a: None, None)
    with BenchEnv("scale", fake_hosts=args.hosts, vms_per_host=args.vms, register=False) as env:
        print(f"lab: {args.hosts} fake hosts x {args.vms} VMs up in {env.lab_seconds:.1f} s", flush=True)
        stack = env.stack
        stack.start_web()
        stack.start_worker()
        time.sleep(3)
        web_rest, worker_rest = rss_mib(stack.procs["web"].pid), rss_mib(stack.procs["worker"].pid)
        names = [f"listener{i}" for i in range(args.listeners)]
        for name in names:
            stack.start_listener(name, ttl=15)
        time.sleep(3)
        memory = watch_in_two_halves(env, stack, names)
        print(f"watching {args.hosts} hosts: {memory['listener_rss_watching_mib']} MiB, "
              f"{memory['listener_kib_per_host']:.0f} KiB per host", flush=True)  # fmt: skip

        # Full resync after a restart: stop the listeners (they release their leases), start them again.
        for name in names:
            stack.stop(name)
        full = listener_full_resync(env, stack, "restarted", count=args.listeners)
        print(f"full resync of {args.hosts} hosts after a restart: {full:.1f} s", flush=True)
        one = one_host_resync()
        print(f"one host of {one['domains']} VMs: p50 {one['p50_ms']} ms, p95 {one['p95_ms']} ms", flush=True)

        from vms.models import VM

        pages = time_urls(stack.http_port, env.session_cookie(), URLS, args.repeats)
        for url, t in pages.items():
            print(f"  {url:<50} p50 {t['p50_ms']:>7} ms  p95 {t['p95_ms']:>7} ms", flush=True)

        latencies, lost, achieved = measure_latency(env, stack, events=args.events, rate=args.rate)
        stats = summary_ms(latencies)
        print(
            f"events at {achieved:.0f}/s: p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms, lost {lost}", flush=True
        )
        restarted = [n for n in stack.procs if n.startswith("restarted")]
        listener_after = [rss_mib(stack.procs[n].pid) for n in restarted]
        result = {
            "hosts": args.hosts,
            "vms": VM.objects.count(),
            "lab_up_seconds": round(env.lab_seconds, 2),
            **memory,
            "listener_rss_after_events_mib": listener_after,
            "full_resync_after_restart_seconds": round(full, 2),
            "one_host_resync": one,
            "pages": pages,
            "events": {
                "count": args.events,
                "rate_target": args.rate,
                "rate_achieved": round(achieved, 1),
                "lost": lost,
                "latency": stats,
            },
            "web_rss_at_rest_mib": web_rest,
            "worker_rss_at_rest_mib": worker_rest,
            "web_rss_after_mib": rss_mib(stack.procs["web"].pid),
        }
        path = env.write_result(result)
        print(json.dumps(result, indent=2))
        print(f"results in {path}")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
