"""Event latency: a state change made with libvirt on a host → the vm.updated message in a
WebSocket client, through the real listener, Redis channel layer and daphne.

    sudo .venv/bin/python bench/events.py                        # 10 fake hosts x 50 VMs, 500 events
    sudo .venv/bin/python bench/events.py --hosts 200 --vms 50 --events 3000 --rate 100

Targets (issue "Real time"): p50 <= 50 ms, p99 <= 250 ms with 10 x 50; (issue "Scale"):
p99 <= 500 ms with 200 hosts at 100 events/s. Also reports the listener's memory per watched host
(the slope of listener RSS between watching half the hosts and watching all of them, so one-off
costs like imports and caches do not count).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BenchEnv, rss_mib, summary_ms


class Client(threading.Thread):
    """A WebSocket client subscribed to the fleet, recording when each VM's state arrives."""

    def __init__(self, url: str, cookie: str, origin: str):
        super().__init__(daemon=True)
        from websockets.sync.client import connect

        self.ws = connect(url, additional_headers={"Cookie": cookie, "Origin": origin}, open_timeout=10)
        assert json.loads(self.ws.recv(timeout=10))["type"] == "hello"
        self.ws.send(json.dumps({"action": "subscribe", "topics": ["fleet"]}))
        assert json.loads(self.ws.recv(timeout=10))["type"] == "subscribed"
        self.waiting: dict[str, tuple[str, float, threading.Event, list]] = {}
        self.lock = threading.Lock()
        self.messages = 0

    def expect(self, uuid: str, state: str) -> tuple[threading.Event, list]:
        done, box = threading.Event(), []
        with self.lock:
            self.waiting[uuid] = (state, 0.0, done, box)
        return done, box

    def run(self) -> None:
        try:
            for raw in self.ws:
                now = time.perf_counter()
                self.messages += 1
                event = json.loads(raw)
                if event.get("type") != "vm.updated":
                    continue
                vm = event["vm"]
                with self.lock:
                    pending = self.waiting.get(vm["uuid"])
                    if pending and pending[0] == vm["state"]:
                        del self.waiting[vm["uuid"]]
                        pending[3].append(now)
                        pending[2].set()
        except Exception:
            pass


def measure_latency(env, stack, *, events: int, rate: float) -> tuple[list[float], int, float]:
    """Change VM states with libvirt at ``rate``/s and time each change to its WebSocket message."""
    import libvirt

    client = Client(f"ws://127.0.0.1:{stack.http_port}/ws/live/", env.session_cookie(), stack.url)
    client.start()
    conns = [libvirt.open(h.uri) for h in env.lab_state.hosts]
    domains = [d for c in conns for d in c.listAllDomains() if d.state()[0] in (1, 3)]
    random.seed(7)
    latencies, lost = [], 0
    interval = 1.0 / rate
    inflight: list[tuple[float, threading.Event, list, str]] = []
    busy: set[str] = set()
    started = time.perf_counter()
    for i in range(events):
        target = started + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        while True:  # never two changes of one VM in flight: each must be seen on its own
            dom = random.choice(domains)
            if dom.UUIDString() not in busy:
                break
        uuid = dom.UUIDString()
        paused = dom.state()[0] == 3
        done, box = client.expect(uuid, "running" if paused else "paused")
        t0 = time.perf_counter()
        dom.resume() if paused else dom.suspend()
        busy.add(uuid)
        inflight.append((t0, done, box, uuid))
        still = []
        for item in inflight:
            if item[1].is_set():
                latencies.append(item[2][0] - item[0])
                busy.discard(item[3])
            else:
                still.append(item)
        inflight = still
    for t0, done, box, uuid in inflight:
        if done.wait(10):
            latencies.append(box[0] - t0)
        else:
            lost += 1
        busy.discard(uuid)
    took = time.perf_counter() - started
    for c in conns:
        c.close()
    client.ws.close()
    return latencies, lost, events / took


def watch_in_two_halves(env, stack, listeners: list[str]) -> dict:
    """Register half the hosts, then the rest; listener RSS at each step gives memory per host."""
    from hosts.services import host_ensure

    rss = lambda: [rss_mib(stack.procs[name].pid) for name in listeners]  # noqa: E731
    idle = rss()
    hosts = env.lab_state.hosts
    half = len(hosts) // 2
    for h in hosts[:half]:
        host_ensure(name=h.name, uri=h.uri)
    first = env.wait_watched(timeout=600)
    time.sleep(2)
    at_half = rss()
    for h in hosts[half:]:
        host_ensure(name=h.name, uri=h.uri)
    second = env.wait_watched(timeout=600)
    time.sleep(2)
    full = rss()
    per_host = (sum(full) - sum(at_half)) / max(1, len(hosts) - half) * 1024
    return {
        "watch_first_half_seconds": round(first, 2),
        "watch_second_half_seconds": round(second, 2),
        "listener_rss_idle_mib": idle,
        "listener_rss_half_mib": at_half,
        "listener_rss_watching_mib": full,
        "listener_kib_per_host": round(per_host, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20.0, help="state changes per second across the fleet")
    parser.add_argument("--listeners", type=int, default=1)
    parser.add_argument("--name", default="events")
    args = parser.parse_args()

    import libvirt

    libvirt.registerErrorHandler(lambda *a: None, None)
    with BenchEnv(args.name, fake_hosts=args.hosts, vms_per_host=args.vms, register=False) as env:
        print(f"lab: {args.hosts} fake hosts x {args.vms} VMs up in {env.lab_seconds:.1f} s")
        stack = env.stack
        stack.start_web()
        names = [f"listener{i}" for i in range(args.listeners)]
        for name in names:
            stack.start_listener(name, ttl=15)
        time.sleep(3)
        memory = watch_in_two_halves(env, stack, names)
        latencies, lost, achieved = measure_latency(env, stack, events=args.events, rate=args.rate)
        stats = summary_ms(latencies)
        result = {
            "hosts": args.hosts,
            "vms_per_host": args.vms,
            "listeners": args.listeners,
            "events": args.events,
            "rate_target": args.rate,
            "rate_achieved": round(achieved, 1),
            "lost": lost,
            "latency": stats,
            "lab_up_seconds": round(env.lab_seconds, 2),
            **memory,
            "web_rss_mib": rss_mib(stack.procs["web"].pid),
        }
        path = env.write_result(result)
        print(json.dumps(result, indent=2))
        print(f"event latency p50 {stats.get('p50_ms')} ms, p99 {stats.get('p99_ms')} ms over {len(latencies)} events "
              f"({lost} lost); listener {memory['listener_kib_per_host']:.0f} KiB per watched host; results in {path}")  # fmt: skip
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
