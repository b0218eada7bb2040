"""Host permissions (for roles and per-host object permissions), and SASL passwords encrypted at
rest with VIRTFLEET_SECRETS_KEY: existing plain-text passwords are encrypted in place."""

from django.db import migrations, models

import core.crypto


def encrypt_existing(apps, schema_editor):
    Host = apps.get_model("hosts", "Host")
    for pk, password in Host.objects.exclude(sasl_password="").values_list("pk", "sasl_password"):
        Host.objects.filter(pk=pk).update(sasl_password=core.crypto.encrypt(password))


def decrypt_existing(apps, schema_editor):
    Host = apps.get_model("hosts", "Host")
    for pk, token in Host.objects.exclude(sasl_password="").values_list("pk", "sasl_password"):
        Host.objects.filter(pk=pk).update(sasl_password=core.crypto.decrypt(token, what="Host.sasl_password"))


class Migration(migrations.Migration):
    dependencies = [
        ("hosts", "0002_migration"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="host",
            options={
                "ordering": ["name"],
                "permissions": [
                    ("manage_host", "Add, edit, resync and remove hosts"),
                    ("maintain_host", "Put hosts into and out of maintenance"),
                    ("operate_vms", "Operate the VMs on the host"),
                    ("console_vms", "Open the consoles of the VMs on the host"),
                    ("migrate_vms", "Migrate the VMs on the host"),
                ],
            },
        ),
        # a Fernet token is longer than the password it holds: make room first (plain text column)
        migrations.AlterField(
            model_name="host",
            name="sasl_password",
            field=models.TextField(blank=True, verbose_name="SASL password"),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
        migrations.AlterField(
            model_name="host",
            name="sasl_password",
            field=core.crypto.EncryptedTextField(blank=True, verbose_name="SASL password"),
        ),
    ]
