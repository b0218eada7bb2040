"""Run every benchmark and write bench/results/report.md with the figures beside their targets.

sudo .venv/bin/python bench/run_all.py            # everything (about 15 minutes on 2 cores)
sudo .venv/bin/python bench/run_all.py --only events migration
sudo .venv/bin/python bench/run_all.py --report   # only rebuild the report from results/*.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
ORDER = ["inventory", "events", "jobs", "migration", "console", "scale", "storage", "create", "clone"]


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def dig(data: dict | None, *keys, default=None):
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def row(concern: str, figure: str, value, target: str = "", ok: bool | None = None, unit: str = "") -> str:
    shown = "—" if value is None else f"{value}{unit}"
    verdict = "" if ok is None else ("✅" if ok else "❌")
    return f"| {concern} | {figure} | {shown} | {target} | {verdict} |"


def le(value, limit) -> bool | None:
    return None if value is None else value <= limit


def report() -> str:
    inv, ev, jobs, mig, con, sc, st, cr, cl = (load(n) for n in ORDER)
    lines = [
        "# Virtfleet benchmark report",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} from bench/results/*.json; machine: "
        f"{dig(sc or ev or jobs or {}, 'machine', 'cpus', default='?')} CPUs. Each script's JSON has every figure.",
        "",
        "| concern | figure | measured | target | |",
        "|---|---|---|---|---|",
    ]

    def at_most(concern: str, figure: str, value, limit: float, unit: str = "", target: str = "") -> str:
        return row(concern, figure, value, target or f"≤ {limit:g}{unit}", le(value, limit), unit)

    def info(concern: str, figure: str, value, unit: str = "") -> str:
        return row(concern, figure, value, unit=unit)

    hosts = f"{dig(ev, 'hosts')} hosts x {dig(ev, 'vms_per_host')} VMs" if ev else ""
    rate = dig(mig, "progress_updates_per_second")
    lines += [
        at_most("events", f"latency p50 ({hosts})", dig(ev, "latency", "p50_ms"), 50, " ms"),
        at_most("events", f"latency p99 ({hosts})", dig(ev, "latency", "p99_ms"), 250, " ms"),
        info("events", "listener memory per watched host", dig(ev, "listener_kib_per_host"), " KiB"),
        at_most("inventory", "resync of one host of 50 VMs, p50", dig(inv, "one_host_resync", "p50_ms"), 200, " ms"),
        info("jobs", "request → running on a worker, p50", dig(jobs, "request_to_running", "p50_ms"), " ms"),
        info("jobs", "request → running on a worker, p95", dig(jobs, "request_to_running", "p95_ms"), " ms"),
        info(
            "jobs",
            f"throughput, {dig(jobs, 'jobs')} suspend/resume jobs, {dig(jobs, 'workers')} workers",
            dig(jobs, "jobs_per_second"),
            " jobs/s",
        ),
        info(
            "jobs",
            "same operations by direct libvirt calls (baseline)",
            dig(jobs, "direct_libvirt_ops_per_second"),
            " ops/s",
        ),
        info("migration", "median, Virtfleet job", dig(mig, "virtfleet_median_s"), " s"),
        info("migration", "median, virsh migrate --live --p2p (baseline)", dig(mig, "virsh_median_s"), " s"),
        at_most("migration", "ratio Virtfleet / virsh", dig(mig, "ratio"), 1.2),
        row(
            "migration",
            "progress updates seen by a browser client",
            rate,
            "≥ 2 /s",
            None if rate is None else rate >= 2,
            " /s",
        ),
        at_most(
            "console",
            "click “Console” → first frame, p50",
            dig(con, "p50_ms") or dig(con, "click_to_first_frame", "p50_ms"),
            1500,
            " ms",
        ),
    ]
    if st:
        gib = f"{st['size_bytes'] / 2**30:g} GiB, half holes"
        ratio = st["ratio"]
        growth = max(max(r.values()) for r in st["rss_growth_mib"])
        lines += [
            info("storage", f"upload through the browser's path ({gib})", st["virtfleet_mib_s"], " MiB/s"),
            info("storage", "virsh vol-upload --sparse of the same file (baseline)", st["virsh_mib_s"], " MiB/s"),
            row("storage", "upload ratio Virtfleet / virsh", ratio, "≥ 0.8", ratio >= 0.8),
            row(
                "storage",
                "on disk after the upload / after virsh's",
                f"{st['virtfleet_allocation_bytes'] / 2**20:.0f} / {st['virsh_allocation_bytes'] / 2**20:.0f} MiB",
                "equal",
                st["virtfleet_allocation_bytes"] <= st["virsh_allocation_bytes"],
            ),
            at_most("storage", "web and worker RSS growth during the upload", growth, 64, " MiB", "< 64 MiB"),
            info(
                "storage",
                "download to the browser / virsh vol-download --sparse",
                f"{st.get('download_virtfleet_mib_s')} / {st.get('download_virsh_mib_s')}",
                " MiB/s",
            ),
        ]
    if cr:
        lines += [
            info("create", "imported disk: request → guest booted (Virtfleet, median)", cr["virtfleet_median_s"], " s"),
            info("create", "virt-install --import --noautoconsole of the same image", cr["virt_install_median_s"], " s"),
            row("create", "ratio Virtfleet / virt-install", cr["ratio"], "≤ 1.2", cr["ratio"] <= 1.2),
            info("create", "request → domain running (Virtfleet / virt-install)",
                 f"{cr['virtfleet_running_median_s']} / {cr['virt_install_running_median_s']}", " s"),
        ]  # fmt: skip
    if cl:
        lines += [
            info("clone", "1 GiB disk, full clone: request → job succeeded (Virtfleet, median)", cl["virtfleet_median_s"], " s"),
            info("clone", "virt-clone --auto-clone of the same VM", cl["virt_clone_median_s"], " s"),
            row("clone", "ratio Virtfleet / virt-clone", cl["ratio"], "≤ 1.1", cl["ratio"] <= 1.1),
            info("clone", "linked clone (qcow2 overlay, source frozen), median", cl["linked_median_s"], " s"),
        ]  # fmt: skip
    if sc:
        scale = f"{sc['hosts']} hosts, {sc['vms']} VMs"
        pages = sc.get("pages", {})
        lines += [
            at_most("scale", f"fleet page p95 ({scale})", dig(pages, "/", "p95_ms"), 150, " ms"),
            at_most("scale", "fleet page sorted by memory, p95", dig(pages, "/?sort=-memory", "p95_ms"), 150, " ms"),
            at_most(
                "scale",
                "fleet page filtered (running, by host), p95",
                dig(pages, "/?state=running&sort=host", "p95_ms"),
                150,
                " ms",
            ),
            at_most("scale", "API VM list p95", dig(pages, "/api/vms/?limit=50", "p95_ms"), 150, " ms", "same order"),
            at_most(
                "scale",
                "full resync of every host after a listener restart",
                sc["full_resync_after_restart_seconds"],
                20,
                " s",
            ),
            at_most("scale", "resync of one host of 50 VMs, p50", dig(sc, "one_host_resync", "p50_ms"), 200, " ms"),
            at_most(
                "scale",
                f"event latency p99 at {dig(sc, 'events', 'rate_achieved')}/s",
                dig(sc, "events", "latency", "p99_ms"),
                500,
                " ms",
            ),
            info("scale", "listener memory, all hosts watched", sum(sc["listener_rss_watching_mib"]), " MiB"),
            info("scale", "listener memory per watched host", sc["listener_kib_per_host"], " KiB"),
            info("scale", "web process at rest", sc["web_rss_at_rest_mib"], " MiB"),
            info("scale", "worker process at rest", sc["worker_rss_at_rest_mib"], " MiB"),
            info("scale", "lab up, fake hosts", sc["lab_up_seconds"], " s"),
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=ORDER)
    parser.add_argument("--report", action="store_true", help="only rebuild the report")
    args = parser.parse_args()
    failed = []
    if not args.report:
        for name in args.only or ORDER:
            script = BENCH / f"{name}.py"
            if not script.exists():
                print(f"== {name}: no bench/{name}.py, skipped")
                continue
            print(f"== {name}", flush=True)
            if subprocess.run([sys.executable, str(script)], cwd=BENCH.parent).returncode != 0:
                failed.append(name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = report()
    (RESULTS / "report.md").write_text(text)
    print(text)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
