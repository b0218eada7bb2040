"""Jobs: request → running on a worker (p50/p95) and jobs per second for 500 suspend/resume jobs
over fake lab hosts with 2 Celery worker processes, beside the same 500 operations done by direct
libvirt calls in one process.

    sudo .venv/bin/python bench/jobs.py [--jobs 500] [--workers 2] [--threads 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BenchEnv, rss_mib, summary_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--vms", type=int, default=50, help="VMs per fake host")
    args = parser.parse_args()
    hosts = -(-args.jobs // int(args.vms * 0.8)) + 1  # ~80% of fake VMs are running or paused

    import libvirt

    libvirt.registerErrorHandler(lambda *a: None, None)
    with BenchEnv("jobs", fake_hosts=hosts, vms_per_host=args.vms) as env:
        env.sync_all()
        from jobs.models import Job
        from vms.models import VM
        from vms.services import vm_job_request

        stack = env.stack
        from tests.e2e.stack import wait_for

        for i in range(args.workers):
            stack.start(
                f"worker{i}",
                [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "-Q", "lifecycle", "--pool", "threads",
                 "--concurrency", str(args.threads), "--hostname", f"bench{i}@%h", "--loglevel", "INFO"],
            )  # fmt: skip
        for i in range(args.workers):
            wait_for(lambda i=i: "ready." in stack.log(f"worker{i}"), 60, message=f"worker{i} to be ready")

        vms = list(
            VM.objects.select_related("host").filter(state__in=["running", "paused"]).order_by("id")[: args.jobs]
        )
        assert len(vms) == args.jobs, f"only {len(vms)} running/paused VMs"
        plan = [(vm, "suspend" if vm.state == "running" else "resume") for vm in vms]

        started = time.perf_counter()
        ids = [vm_job_request(vm=vm, action=kind).pk for vm, kind in plan]
        requested = time.perf_counter() - started
        wait_for(lambda: Job.objects.filter(pk__in=ids, status__in=["succeeded", "failed"]).count() == len(ids), 600,
                 interval=0.2, message="every job to finish")  # fmt: skip
        jobs = list(Job.objects.filter(pk__in=ids))
        failed = [j for j in jobs if j.status != "succeeded"]
        to_running = [(j.started_at - j.queued_at).total_seconds() for j in jobs if j.started_at]
        span = (max(j.finished_at for j in jobs) - min(j.queued_at for j in jobs)).total_seconds()
        worker_rss = [rss_mib(stack.procs[f"worker{i}"].pid) for i in range(args.workers)]

        # Baseline: the same operations (each VM back the other way) by direct libvirt calls.
        conns = {h.pk: libvirt.open(h.uri) for h in {vm.host for vm, _ in plan}}
        doms = [(conns[vm.host_id].lookupByUUIDString(str(vm.uuid)), kind) for vm, kind in plan]
        t0 = time.perf_counter()
        for dom, kind in doms:
            dom.resume() if kind == "suspend" else dom.suspend()
        direct = time.perf_counter() - t0
        for c in conns.values():
            c.close()

        result = {
            "jobs": len(ids),
            "workers": args.workers,
            "threads_per_worker": args.threads,
            "failed": len(failed),
            "request_seconds": round(requested, 2),
            "request_to_running": summary_ms(to_running),
            "jobs_per_second": round(len(ids) / span, 1),
            "span_seconds": round(span, 2),
            "direct_libvirt_ops_per_second": round(len(doms) / direct, 1),
            "direct_libvirt_seconds": round(direct, 3),
            "ratio_direct_over_jobs": round((len(doms) / direct) / (len(ids) / span), 1),
            "worker_rss_mib": worker_rss,
        }
        path = env.write_result(result)
        print(json.dumps(result, indent=2))
        print(f"{len(ids)} jobs at {result['jobs_per_second']} jobs/s; request→running p50 "
              f"{result['request_to_running'].get('p50_ms')} ms, p95 {result['request_to_running'].get('p95_ms')} ms; "
              f"direct libvirt {result['direct_libvirt_ops_per_second']} ops/s; results in {path}")  # fmt: skip
        if failed:
            print("failed:", [(j.vm_name, j.error) for j in failed[:5]])
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
