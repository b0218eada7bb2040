"""`python -m lab.measure real|fake`: print how fast and how big the lab is here.

Starts its own lab (default base dir var/lab-measure, ports from 18600), measures,
and stops it again. Numbers only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import libvirt

from lab import core
from lab.guests import wait_guest_ready
from lab.state import LabState

MIGRATE_FLAGS = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PEER2PEER
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
)


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def _report_memory(label: str, pids: list[int]) -> None:
    if not pids:
        return
    mem = [memory_kib(p) for p in pids]
    rss = [m[0] for m in mem]
    pss = [m[1] for m in mem]
    print(
        f"  {label:<16} n={len(pids):<4} RSS avg {statistics.mean(rss) / 1024:6.1f} MiB "
        f"(max {max(rss) / 1024:.1f})  PSS avg {statistics.mean(pss) / 1024:6.1f} MiB  "
        f"PSS total {sum(pss) / 1024:7.1f} MiB"
    )


def report_memory(state: LabState) -> None:
    print("memory:")
    real, fake = state.real_hosts, state.fake_hosts
    _report_memory("libvirtd (real)", [h.pids["libvirtd"] for h in real])
    _report_memory("virtlogd", [h.pids["virtlogd"] for h in real])
    _report_memory("sshd", [h.pids["sshd"] for h in real if "sshd" in h.pids])
    _report_memory("qemu (guest)", [pid for h in real for pid in core.qemu_pids(h).values()])
    _report_memory("libvirtd (fake)", [h.pids["libvirtd"] for h in fake])
    _report_memory("keeper", [state.keeper_pid] if state.keeper_pid else [])


def measure_real(base: Path, port_base: int) -> None:
    t = time.monotonic()
    state = core.up(base, hosts=2, guests_per_host=2, port_base=port_base, ssh=True)
    print(f"up, 2 real hosts, first guests ready: {time.monotonic() - t:.2f}s")
    try:
        report_memory(state)
        lab1, lab2 = state.host("lab1"), state.host("lab2")
        c1, c2 = libvirt.open(lab1.uri), libvirt.open(lab2.uri)
        dom = c1.lookupByName("lab1-vm2")
        t = time.monotonic()
        dom.create()
        print(f"start() returned after {time.monotonic() - t:.2f}s")
        wait_guest_ready(lab1, "lab1-vm2", 60)
        print(f"boot to banner: {time.monotonic() - t:.2f}s")
        t = time.monotonic()
        dom.shutdown()
        while dom.isActive():
            time.sleep(0.02)
        print(f"ACPI shutdown to shut off: {time.monotonic() - t:.2f}s")
        for i in range(4):
            (src, dst) = (c1, lab2) if i % 2 == 0 else (c2, lab1)
            t = time.monotonic()
            src.lookupByName("lab1-vm1").migrateToURI3(
                dst.uri,
                {
                    libvirt.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.1",
                    libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: "127.0.0.1",
                },
                MIGRATE_FLAGS,
            )
            print(f"live p2p migration lab1-vm1 -> {dst.name}: {time.monotonic() - t:.2f}s")
    finally:
        t = time.monotonic()
        n = len(core.down(base))
        print(f"down ({n} processes): {time.monotonic() - t:.2f}s")


def measure_fake(base: Path, port_base: int, fake_hosts: int, vms: int) -> None:
    t = time.monotonic()
    state = core.up(base, hosts=0, fake_hosts=fake_hosts, vms_per_host=vms, port_base=port_base)
    print(f"up, {fake_hosts} fake hosts x {vms} VMs: {time.monotonic() - t:.2f}s")
    try:
        report_memory(state)
        t = time.monotonic()
        total = 0
        for host in state.fake_hosts:
            conn = libvirt.open(host.uri)
            total += len(conn.listAllDomains())
            conn.close()
        print(f"listing all {total} domains, one connection per host: {time.monotonic() - t:.2f}s")
    finally:
        t = time.monotonic()
        n = len(core.down(base))
        print(f"down ({n} processes): {time.monotonic() - t:.2f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.measure", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["real", "fake"])
    parser.add_argument("--base-dir", default=str(core.REPO_ROOT / "var" / "lab-measure"))
    parser.add_argument("--port-base", type=int, default=18600)
    parser.add_argument("--fake-hosts", type=int, default=50)
    parser.add_argument("--vms-per-host", type=int, default=20)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="lab: %(message)s")
    base = Path(args.base_dir)
    if args.what == "real":
        measure_real(base, args.port_base)
    else:
        measure_fake(base, args.port_base, args.fake_hosts, args.vms_per_host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
