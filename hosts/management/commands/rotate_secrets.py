"""``manage.py rotate_secrets``: re-encrypt every stored host credential with the first key of
VIRTFLEET_SECRETS_KEY (after a new key was put in front of the old one)."""

from django.core.management.base import BaseCommand
from django.db import transaction

from hosts.models import Host


class Command(BaseCommand):
    help = "Re-encrypt stored host credentials with the first VIRTFLEET_SECRETS_KEY key (then drop the old key)."

    def handle(self, *args, **options):
        count = 0
        with transaction.atomic():
            for host in Host.objects.select_for_update().exclude(sasl_password=""):
                # Reading decrypted it with whichever key fits; saving encrypts with the first key.
                Host.objects.filter(pk=host.pk).update(sasl_password=host.sasl_password)
                count += 1
        self.stdout.write(f"re-encrypted the credentials of {count} host(s) with the current key")
