"""``manage.py lab up|down|status``: the local lab of real libvirt hosts, registered as hosts.

The lab itself (lab/) knows nothing of Django; this command starts or stops it and registers its
hosts in the dashboard (idempotent), then reads their inventory once.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

import lab
from hosts.models import Host
from hosts.services import host_ensure, host_sync


class Command(BaseCommand):
    help = "Start, stop or show the local lab of libvirt hosts (development and tests)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        up = sub.add_parser("up", help="start the lab and register its hosts")
        up.add_argument("--hosts", type=int, default=2, help="real hosts with tiny QEMU guests (default 2)")
        up.add_argument("--guests-per-host", type=int, default=2)
        up.add_argument("--fake-hosts", type=int, default=0, help="test-driver hosts for scale")
        up.add_argument("--vms-per-host", type=int, default=20, help="domains per fake host")
        up.add_argument("--ssh", action="store_true", help="register real hosts by qemu+ssh instead of qemu+tcp")
        up.add_argument("--no-register", action="store_true", help="only start the lab")
        up.add_argument("--no-wait", action="store_true", help="do not wait for started guests to boot")
        down = sub.add_parser("down", help="stop every process of the lab")
        down.add_argument("--unregister", action="store_true", help="also remove the lab's hosts from the dashboard")
        sub.add_parser("status", help="show the lab and its hosts' state in the dashboard")
        for p in (up, down, sub.choices["status"]):
            p.add_argument("--base-dir", default=str(settings.VIRTFLEET["LAB_DIR"]))

    def handle(self, *args, action, base_dir, **options):
        try:
            getattr(self, f"_{action}")(base_dir, **options)
        except lab.LabAlreadyRunning as exc:
            self.stdout.write(f"The lab is already running ({len(exc.state.hosts)} hosts); registering its hosts.")
            if not options.get("no_register"):
                self._register(exc.state, ssh=options.get("ssh", False))
        except lab.LabError as exc:
            raise CommandError(str(exc)) from None

    def _up(self, base_dir, *, hosts, guests_per_host, fake_hosts, vms_per_host, ssh, no_register, no_wait, **_):
        started = time.monotonic()
        state = lab.up(
            base_dir,
            hosts=hosts,
            guests_per_host=guests_per_host,
            fake_hosts=fake_hosts,
            vms_per_host=vms_per_host,
            ssh=ssh,
            wait_guests=not no_wait,
        )
        self.stdout.write(
            f"lab up in {time.monotonic() - started:.1f} s: {len(state.real_hosts)} real, {len(state.fake_hosts)} fake host(s)"
        )
        if not no_register:
            self._register(state, ssh=ssh)

    def _register(self, state, *, ssh: bool) -> None:
        started = time.monotonic()
        registered = []
        for h in state.hosts:
            uri = h.ssh_uri if ssh and h.ssh_uri else h.uri
            # lab hosts share 127.0.0.1: the migration stream must be told so (see LAB.md)
            host, _created = host_ensure(
                name=h.name, uri=uri, migration_address="127.0.0.1" if h.kind == "real" else ""
            )
            registered.append(host)
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda host: host_sync(host=host), registered))
        for result in results:
            status = f"{result.domains} VMs" if result.ok else f"unreachable: {result.error}"
            self.stdout.write(f"  {result.host.name:<10} {result.host.uri:<45} {status}")
        self.stdout.write(f"registered {len(registered)} host(s) in {time.monotonic() - started:.1f} s")

    def _down(self, base_dir, *, unregister, **_):
        state = lab.load_state(base_dir)
        stopped = lab.down(base_dir)
        self.stdout.write(f"stopped {len(stopped)} lab process(es)")
        if unregister and state is not None:
            from hosts.services import host_remove

            for h in state.hosts:
                for host in Host.objects.filter(name=h.name):
                    host_remove(host=host)
            self.stdout.write(f"unregistered {len(state.hosts)} host(s)")

    def _status(self, base_dir, **_):
        state = lab.status(base_dir)
        if state is None:
            self.stdout.write("no lab running")
            return
        known = {h.name: h for h in Host.objects.filter(name__in=[h.name for h in state.hosts])}
        for h in state.hosts:
            host = known.get(h.name)
            shown = host.status if host else "not registered"
            self.stdout.write(f"{h.name:<10} {h.kind:<5} {h.uri:<45} dashboard: {shown}")
