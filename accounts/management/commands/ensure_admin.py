"""Create the first admin account on a fresh install and print its credentials once."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create an 'admin' superuser with a random password if no user exists yet (prints it once)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.exists():
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        bar = "=" * 64
        self.stdout.write(
            f"{bar}\n First start: created the administrator account\n"
            f"   user:     {username}\n   password: {password}\n"
            f" Shown only now. Change it after signing in (Django admin → Users).\n{bar}"
        )
