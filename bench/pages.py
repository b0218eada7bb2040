"""Pages and API lists with a big fleet: server time (HTTP round trip to daphne on loopback) of the
first page, sorted and filtered, p50/p95 over repeated requests.

    sudo .venv/bin/python bench/pages.py [--hosts 200] [--vms 50] [--repeats 40]

Target (issue "Scale"): the fleet page with 10,000 VMs p95 <= 150 ms, the API list of the same
order. Query counts per page are checked by tests (tests/test_query_counts.py), not here.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BenchEnv, summary_ms

URLS = [
    "/",
    "/?sort=-memory",
    "/?state=running&sort=host",
    "/?q=vm1",
    "/?page=100",
    "/hosts/",
    "/jobs/",
    "/api/vms/?limit=50",
    "/api/vms/?state=paused&sort=-changed&limit=100",
    "/api/hosts/",
]


def time_urls(port: int, cookie: str, urls: list[str], repeats: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = {}
    for url in urls:
        times, size = [], 0
        for i in range(repeats + 2):
            started = time.perf_counter()
            conn.request("GET", url, headers={"Cookie": cookie, "Host": "127.0.0.1"})
            response = conn.getresponse()
            body = response.read()
            took = time.perf_counter() - started
            assert response.status == 200, (url, response.status, body[:300])
            if i >= 2:  # the first two warm the caches (templates, connections)
                times.append(took)
            size = len(body)
        out[url] = {**summary_ms(times), "bytes": size}
    conn.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    with BenchEnv("pages", fake_hosts=args.hosts, vms_per_host=args.vms) as env:
        env.sync_all()
        from vms.models import VM

        total = VM.objects.count()
        env.stack.start_web()
        timings = time_urls(env.stack.http_port, env.session_cookie(), URLS, args.repeats)
        result = {"hosts": args.hosts, "vms": total, "repeats": args.repeats, "pages": timings}
        path = env.write_result(result)
        print(json.dumps(result, indent=2))
        for url, t in timings.items():
            print(f"{url:<50} p50 {t['p50_ms']:>7} ms  p95 {t['p95_ms']:>7} ms  ({t['bytes'] // 1024} KiB)")
        print(f"{total} VMs; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
