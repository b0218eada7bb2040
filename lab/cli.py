"""`python -m lab prepare|up|down|status`: the lab from a shell.

Exit codes: 0 success (status: lab running and healthy), 1 error, 2 usage error
(argparse), 3 `up`: a lab is already running / `status`: no lab running,
4 `status`: lab running but some of its daemons died.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path

import libvirt

from lab import core, domains
from lab.errors import LabAlreadyRunning, LabError
from lab.images import prepare
from lab.state import LabHost, LabState, load_state

EXIT_OK, EXIT_ERROR, EXIT_ALREADY_RUNNING, EXIT_NOT_RUNNING, EXIT_DEGRADED = 0, 1, 3, 3, 4
DEFAULT_BASE_DIR = os.environ.get("VIRTFLEET_LAB_DIR") or str(core.REPO_ROOT / "var" / "lab")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="lab: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except LabAlreadyRunning as e:
        print(f"lab: {e}", file=sys.stderr)
        _print_state(e.state, args)
        return EXIT_ALREADY_RUNNING
    except LabError as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description="Virtfleet's local libvirt lab.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--base-dir", default=DEFAULT_BASE_DIR, help="lab directory (default: %(default)s)")
    common.add_argument("--json", action="store_true", help="print the lab state as JSON")
    common.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", parents=[common], help="build the guest kernel + initramfs once")
    p.add_argument("--force", action="store_true", help="download and rebuild even if present")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("up", parents=[common], help="start the lab's hosts and guests")
    p.add_argument("--hosts", type=int, default=2, help="real hosts (QEMU/TCG guests), default 2")
    p.add_argument("--guests-per-host", type=int, default=2, help="guests per real host, default 2")
    p.add_argument("--fake-hosts", type=int, default=0, help="test-driver hosts for scale, default 0")
    p.add_argument("--vms-per-host", type=int, default=20, help="domains per fake host, default 20")
    p.add_argument("--ssh", action="store_true", help="also serve each real host over qemu+ssh")
    p.add_argument(
        "--port-base",
        type=int,
        default=None,
        help=f"first port (default ${core.PORT_BASE_ENV} or {core.DEFAULT_PORT_BASE})",
    )
    p.add_argument("--no-wait", action="store_true", help="do not wait for started guests' banners")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", parents=[common], help="stop every process of the lab")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", parents=[common], help="show the running lab")
    p.set_defaults(func=cmd_status)
    return parser


def cmd_prepare(args: argparse.Namespace) -> int:
    images = prepare(args.base_dir, force=args.force)
    if args.json:
        print(json.dumps(images.__dict__, indent=2))
    else:
        print(f"kernel:    {images.kernel} ({images.kernel_package})")
        print(f"initramfs: {images.initrd} ({os.path.getsize(images.initrd) // 1024} KiB)")
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    state = core.up(
        args.base_dir,
        hosts=args.hosts,
        guests_per_host=args.guests_per_host,
        fake_hosts=args.fake_hosts,
        vms_per_host=args.vms_per_host,
        ssh=args.ssh,
        port_base=args.port_base,
        wait_guests=not args.no_wait,
    )
    if not args.json:
        print(f"lab up in {time.monotonic() - started:.1f}s")
    _print_state(state, args)
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    stopped = core.down(args.base_dir)
    if args.json:
        print(json.dumps([{"pid": p.pid, "process": p.label} for p in stopped], indent=2))
    elif stopped:
        print(f"stopped {len(stopped)} processes of the lab in {Path(args.base_dir).resolve()}")
    else:
        print(f"no process of a lab in {Path(args.base_dir).resolve()} was running")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    state = core.status(args.base_dir)
    if state is None:
        if args.json:
            print("null")
        else:
            last = load_state(Path(args.base_dir).resolve())
            where = Path(args.base_dir).resolve()
            if last is None:
                print(f"no lab in {where}")
            elif left := core.leftovers(last):
                print(
                    f"no lab running in {where}: its daemons died, leaving {', '.join(left)}; "
                    "`python -m lab down` (or `up`) stops them"
                )
            else:
                print(f"no lab running in {where} (the one recorded there is stopped)")
        return EXIT_NOT_RUNNING
    _print_state(state, args)
    return EXIT_DEGRADED if core.dead_processes(state) else EXIT_OK


# --- output --------------------------------------------------------------------


def _print_state(state: LabState, args: argparse.Namespace) -> None:
    if args.json:
        print(state.to_json())
        return
    real, fake = state.real_hosts, state.fake_hosts
    print(f"lab in {state.base_dir}: {len(real)} real, {len(fake)} fake hosts (ports from {state.port_base})")
    rows = [("HOST", "KIND", "URI", "PIDS", "GUESTS")]
    for host in state.hosts:
        rows.append((host.name, host.kind, host.uri, _pids(host), _guests(host)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    if state.keeper_pid:
        print(f"fake-host keeper: pid {state.keeper_pid}")
    for host in real:
        print(f"{host.name}: unix {host.unix_uri}")
        if host.ssh_uri:
            print(f"{host.name}: ssh  {host.ssh_uri}")
        if host.vnc_ports and host.migration_ports:
            print(
                f"{host.name}: VNC ports {host.vnc_ports[0]}-{host.vnc_ports[1]}, "
                f"migration ports {host.migration_ports[0]}-{host.migration_ports[1]}, "
                f"host UUID {host.host_uuid}"
            )
        if host.network:
            net = host.network
            print(
                f"{host.name}: network {net.name} (isolated) on bridge {net.bridge}, {net.subnet}, "
                f"DHCP {net.dhcp_start}-{net.dhcp_end}; extra networks: 10.251.{net.index}.0/24 in /28s"
            )
    dead = core.dead_processes(state)
    if dead:
        print("DEAD: " + ", ".join(dead))
    for note in state.notes:
        print(f"note: {note}")


def _pids(host: LabHost) -> str:
    parts = [f"{name} {pid}" for name, pid in host.pids.items()]
    if host.kind == "real":
        try:
            qemus = core.qemu_pids(host)
        except OSError:
            qemus = {}
        if qemus:
            parts.append("qemu " + ",".join(str(p) for p in qemus.values()))
    return ", ".join(parts)


def _guests(host: LabHost) -> str:
    try:
        states = domains.domain_states(host)
    except libvirt.libvirtError:
        return "(host unreachable)"
    if host.kind == "fake":
        counts = Counter(states.values())
        detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"{len(states)} VMs: {detail}"
    return ", ".join(f"{name} {s}" for name, s in sorted(states.items())) or "(none)"


if __name__ == "__main__":
    sys.exit(main())
