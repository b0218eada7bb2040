"""Resync hosts' inventory now: ``manage.py sync_hosts [name ...]``."""

from django.core.management.base import BaseCommand, CommandError

from hosts.models import Host
from hosts.services import host_sync


class Command(BaseCommand):
    help = "Read every domain of the given hosts (default: all) from libvirt and update the inventory."

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="host names (default: every host)")

    def handle(self, *args, names, **options):
        hosts = Host.objects.all()
        if names:
            hosts = hosts.filter(name__in=names)
            missing = set(names) - set(hosts.values_list("name", flat=True))
            if missing:
                raise CommandError(f"unknown host(s): {', '.join(sorted(missing))}")
        failed = 0
        for host in hosts:
            result = host_sync(host=host)
            if result.ok:
                self.stdout.write(
                    f"{host.name}: {result.domains} domains, {result.created} new, {result.updated} changed, "
                    f"{result.moved} moved here, {result.gone} gone ({result.seconds * 1000:.0f} ms)"
                )
            else:
                failed += 1
                self.stderr.write(f"{host.name}: unreachable: {result.error}")
        if failed:
            raise CommandError(f"{failed} host(s) could not be synced")
