"""Keeper of the fake hosts: `python -m lab.keeper --state <base_dir>/state.json`.

A libvirtd serving `test:///default` shares one test-driver instance between all
its clients only while at least one connection stays open; when the last one
closes, the instance and its domains are gone. This process opens one connection
per fake host, fills it with the lab's domains, signals readiness with a file,
and then holds the connections until SIGTERM. It runs libvirt's event loop so it
answers the daemons' keepalive probes (otherwise they drop it after ~30 s).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt

from lab.guests import fake_guest_xml
from lab.state import LabHost, LabState

log = logging.getLogger("lab.keeper")


def fill(conn: libvirt.virConnect, host: LabHost) -> dict[str, int]:
    """Replace the test driver's sample domain by the host's fake VMs."""
    # The default instance starts with one domain called 'test': drop it, so every
    # domain on a fake host is one of ours.
    for dom in conn.listAllDomains():
        if dom.name() == "test":
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    counts = {"running": 0, "paused": 0, "shutoff": 0}
    for k, guest in enumerate(host.guests, start=1):
        dom = conn.defineXML(fake_guest_xml(guest, k))
        if guest.initial_state in ("running", "paused"):
            dom.create()
            if guest.initial_state == "paused":
                dom.suspend()
        counts[guest.initial_state] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.keeper", description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True, help="the lab's state.json")
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--ready", required=True, help="file written once all fake hosts are filled")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s keeper %(levelname)s %(message)s")
    Path(args.pidfile).write_text(f"{os.getpid()}\n")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    libvirt.virEventRegisterDefaultImpl()

    def event_loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=event_loop, name="libvirt-events", daemon=True).start()

    state = LabState.from_json(Path(args.state).read_text())
    fake = state.fake_hosts
    started = time.monotonic()
    conns: dict[str, libvirt.virConnect] = {}

    def open_and_fill(host: LabHost) -> dict[str, int]:
        conn = libvirt.open(host.uri)
        conns[host.name] = conn
        return fill(conn, host)

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = dict(zip((h.name for h in fake), pool.map(open_and_fill, fake), strict=True))
    except libvirt.libvirtError as e:
        log.error("filling the fake hosts failed: %s", e)
        return 1
    took = time.monotonic() - started
    log.info("filled %d fake hosts in %.2fs", len(fake), took)
    tmp = Path(args.ready + ".tmp")
    tmp.write_text(json.dumps({"hosts": results, "seconds": took}, indent=1) + "\n")
    os.replace(tmp, args.ready)

    while not stop.wait(1.0):
        pass
    log.info("SIGTERM: closing %d connections", len(conns))
    for conn in conns.values():
        try:
            conn.close()
        except libvirt.libvirtError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
