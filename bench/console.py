"""Benchmark: from clicking "Console" on a VM's page to the first frame of its screen drawn in the canvas.

Run (as root, from the repository root, after ./virtfleet setup):

    .venv/bin/python -m bench.console [--opens 20] [--port-base 18800]

It brings up what it needs and stops it afterwards: a private redis-server, a scratch SQLite
database under var/bench-console/, a one-host lab (real libvirtd + a tiny QEMU guest; base dir
var/bench-console/lab), daphne and the console proxy, and headless Chromium through Playwright.
Each open: load the VM page, click Console, wait until the canvas shows the guest's text (the
first animation frame with non-black pixels). Times are taken in the browser: the click's
timestamp and the console page's first-frame timestamp, both on the epoch clock. Prints p50, p90
and max (plus where the time goes: ticket, websocket + VNC handshake, first frame) and writes them
to bench/results/console.json. Target: p50 ≤ 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script (bench/run_all.py does): lab, dashboard from the checkout
RESULTS = ROOT / "bench" / "results" / "console.json"
WORK = ROOT / "var" / "bench-console"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early (code {proc.returncode}); see its log under {WORK}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within {timeout:g} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Processes:
    """What the benchmark started, stopped in reverse order by PID (process groups)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        log = open(WORK / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opens", type=int, default=20)
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("VIRTFLEET_BENCH_LAB_PORT_BASE", "18800")))
    args = parser.parse_args()
    if not 1 <= args.opens <= 500:
        raise SystemExit("--opens must be between 1 and 500")

    WORK.mkdir(parents=True, exist_ok=True)
    var = Path(tempfile.mkdtemp(prefix="vardir-", dir=WORK))
    procs = Processes()
    redis_port, http_port, console_port = free_port(), free_port(), free_port()
    redis = procs.start(
        "redis",
        ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no",
         "--dir", str(var)],
        dict(os.environ),
    )  # fmt: skip
    env = {
        **os.environ,
        "VIRTFLEET_LOCAL": "1",
        "DEBUG": "0",
        "VIRTFLEET_VAR_DIR": str(var),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "VIRTFLEET_CONSOLE_PORT": str(console_port),
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DATABASE_URL", None)
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    lab_dir = WORK / "lab"
    state = None

    try:
        import lab

        wait_port(redis_port, redis, "redis-server")
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from hosts.services import host_ensure, host_sync

        call_command("migrate", verbosity=0)
        for candidate in (ROOT / "var" / "lab" / "images", ROOT / "var" / "lab-test" / "images"):
            if not (lab_dir / "images").exists() and candidate.exists():
                lab_dir.mkdir(parents=True, exist_ok=True)
                shutil.copytree(candidate, lab_dir / "images")
        print(f"starting a one-host lab in {lab_dir} (port base {args.port_base}) ...", flush=True)
        try:
            state = lab.up(lab_dir, hosts=1, guests_per_host=1, port_base=args.port_base)
        except lab.LabAlreadyRunning:
            lab.down(lab_dir)
            state = lab.up(lab_dir, hosts=1, guests_per_host=1, port_base=args.port_base)
        lab_host = state.real_hosts[0]
        guest = lab_host.guests[0]
        lab.wait_guest_ready(lab_host, guest.name, timeout=60)
        host, _ = host_ensure(name=lab_host.name, uri=lab_host.uri)
        host_sync(host=host)
        get_user_model().objects.create_superuser(username="bench", password="bench-Password-1")  # noqa: S106

        web = procs.start(
            "web",
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(http_port), "dashboard.asgi:application"],
            env,
        )
        console = procs.start(
            "console", [sys.executable, "manage.py", "console_proxy", "--port", str(console_port)], env
        )
        wait_port(http_port, web, "daphne")
        wait_port(console_port, console, "console proxy")
        samples = run_browser(f"http://127.0.0.1:{http_port}", guest.uuid, args.opens)
    finally:
        procs.stop_all()
        if state is not None:
            lab.down(lab_dir)  # state is only set once lab was imported
        shutil.rmtree(var, ignore_errors=True)
    report(samples)


def run_browser(base: str, uuid: str, opens: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    samples = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # bypass_csp: the probes below are evaluated in the page, which the CSP (no eval) refuses
            page = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True).new_page()
            page.set_default_timeout(20000)
            page.goto(base + "/login/")
            page.fill("#id_username", "bench")
            page.fill("#id_password", "bench-Password-1")
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            for i in range(opens + 1):  # the first open warms caches (static files, connections): not counted
                page.goto(f"{base}/vms/{uuid}/")
                page.wait_for_load_state("load")
                page.evaluate(
                    """() => document.querySelector('#vm-actions [data-action=console]').addEventListener('click',
                         () => sessionStorage.setItem('clickAt', String(performance.timeOrigin + performance.now())))"""
                )
                page.click("#vm-actions [data-action=console]")
                page.wait_for_function("window.vfConsole && window.vfConsole.firstFrameAt !== null", polling=50)
                t = page.evaluate(
                    """() => { const p = window.vfConsole, o = performance.timeOrigin;
                         return {clickAt: Number(sessionStorage.getItem('clickAt')), navigationAt: o,
                                 ticketRequestedAt: o + p.ticketRequestedAt, ticketAt: o + p.ticketAt,
                                 connectedAt: o + p.connectedAt, firstFrameAt: o + p.firstFrameAt}; }"""
                )
                if i == 0:
                    continue
                samples.append(
                    {
                        "total_ms": t["firstFrameAt"] - t["clickAt"],
                        "page_ms": t["ticketRequestedAt"] - t["clickAt"],
                        "ticket_ms": t["ticketAt"] - t["ticketRequestedAt"],
                        "connect_ms": t["connectedAt"] - t["ticketAt"],
                        "first_frame_ms": t["firstFrameAt"] - t["connectedAt"],
                    }
                )
                print(f"open {i:2d}: {samples[-1]['total_ms']:7.1f} ms", flush=True)
        finally:
            browser.close()
    return samples


def report(samples: list[dict]) -> None:
    totals = [s["total_ms"] for s in samples]
    summary = {
        "benchmark": "console: click 'Console' on the VM page -> first frame drawn in the canvas",
        "opens": len(samples),
        "p50_ms": round(statistics.median(totals), 1),
        "p90_ms": round(percentile(totals, 0.9), 1),
        "max_ms": round(max(totals), 1),
        "min_ms": round(min(totals), 1),
        "target_p50_ms": 1500,
        "breakdown_p50_ms": {
            key: round(statistics.median(s[key] for s in samples), 1)
            for key in ("page_ms", "ticket_ms", "connect_ms", "first_frame_ms")
        },
        "samples_ms": [round(t, 1) for t in totals],
        "machine": {"cpus": os.cpu_count()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    b = summary["breakdown_p50_ms"]
    print(
        f"\nconsole click -> first frame over {summary['opens']} opens: p50 {summary['p50_ms']:.0f} ms, "
        f"p90 {summary['p90_ms']:.0f} ms, max {summary['max_ms']:.0f} ms (target p50 <= 1500 ms)\n"
        f"  p50 breakdown: page load {b['page_ms']:.0f} ms, ticket {b['ticket_ms']:.0f} ms, "
        f"websocket + VNC handshake {b['connect_ms']:.0f} ms, first frame {b['first_frame_ms']:.0f} ms\n"
        f"  written to {RESULTS.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
