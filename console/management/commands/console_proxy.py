"""``manage.py console_proxy``: the in-browser console's websocket proxy (websockify + our tickets).

Run one per machine that browsers (or the reverse proxy) can reach; it needs the same Redis and
database as the web process, and network access to the hosts' VNC ports (or their SSH).
"""

import logging
import multiprocessing
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from console.proxy import ConsoleProxy


class Command(BaseCommand):
    help = "Serve VM consoles to browsers: websocket → single-use ticket → the VM's VNC server."

    def add_arguments(self, parser):
        parser.add_argument(
            "--port",
            type=int,
            default=settings.VIRTFLEET["CONSOLE_PORT"],
            help="port to listen on (default: $VIRTFLEET_CONSOLE_PORT or 6080)",
        )
        parser.add_argument(
            "--host",
            default=os.environ.get("VIRTFLEET_BIND") or "127.0.0.1",
            help="address to listen on (default: $VIRTFLEET_BIND or 127.0.0.1)",
        )
        parser.add_argument("--cert", default="", help="TLS certificate (PEM) to serve wss:// directly")
        parser.add_argument("--key", default="", help="TLS key, if not in the certificate file")
        parser.add_argument(
            "--heartbeat", type=int, default=20, help="seconds between pings (keeps idle consoles open through proxies)"
        )

    def handle(self, *args, port, host, cert, key, heartbeat, **options):
        if not 1 <= port <= 65535:
            raise CommandError(f"--port must be between 1 and 65535, not {port}")
        if cert and not os.path.isfile(cert):
            raise CommandError(f"no certificate file at {cert}")
        if key and not os.path.isfile(key):
            raise CommandError(f"no key file at {key}")
        logging.getLogger("console").setLevel(logging.INFO)
        # websockify forks one process per connection; it pickles nothing, so fork is required, and
        # no database connection may be shared with the children.
        multiprocessing.set_start_method("fork", force=True)
        connections.close_all()
        server = ConsoleProxy(
            listen_host=host,
            listen_port=port,
            # websockify looks for a certificate at cert ("" means the working directory): name a
            # file that does not exist when TLS is left to a reverse proxy.
            cert=cert or "(no --cert given)",
            key=key or None,
            heartbeat=heartbeat or None,
        )
        self.stdout.write(f"console proxy listening on {host}:{port}")
        self.stdout.flush()
        server.start_server()
