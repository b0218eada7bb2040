"""``manage.py listen``: watch hosts' libvirt events and keep the inventory live.

Run one or several (on one machine or many): they share the hosts through leases in Redis.
"""

import logging
import signal

from django.core.management.base import BaseCommand

from hosts.listener import Listener, ListenerConfig


class Command(BaseCommand):
    help = "Hold one libvirt connection per leased host and turn domain events into live updates."

    def add_arguments(self, parser):
        parser.add_argument("--lease-ttl", type=float, default=15.0, help="seconds before a dead listener's hosts move")
        parser.add_argument("--tick", type=float, default=2.0, help="seconds between lease renewals")
        parser.add_argument("--shards", type=int, default=4, help="event-processing threads")
        parser.add_argument("--sync-workers", type=int, default=8, help="parallel connects and resyncs")
        parser.add_argument("--name", default="", help="listener id (default host:pid:random)")
        parser.add_argument("--lease-prefix", default="virtfleet", help="lease namespace in Redis")

    def handle(self, *args, lease_ttl, tick, shards, sync_workers, name, lease_prefix, **options):
        logging.getLogger("hosts").setLevel(logging.INFO)
        listener = Listener(
            config=ListenerConfig(
                lease_ttl=lease_ttl, tick=tick, shards=shards, sync_workers=sync_workers, lease_prefix=lease_prefix
            ),
            owner=name,
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: listener.stop())
        listener.run()
