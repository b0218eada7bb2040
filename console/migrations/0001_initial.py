"""ConsoleSession moves from vms to the console app, its rows and table untouched."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

NEW_APP = 'console'
MODELS = ['consolesession']


def move_content_types(apps, schema_editor):
    """Permissions and object permissions follow the model: its content type changes app."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MODELS:
        if not ContentType.objects.filter(app_label=NEW_APP, model=model).exists():
            ContentType.objects.filter(app_label="vms", model=model).update(app_label=NEW_APP)


def move_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MODELS:
        ContentType.objects.filter(app_label=NEW_APP, model=model).update(app_label="vms")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('vms', '0007_vm_observed_at'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The tables stay where they are (vms_*): only Django's idea of which app owns them moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='ConsoleSession',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('username', models.CharField(max_length=150)),
                    ('vm_uuid', models.UUIDField(db_index=True)),
                    ('vm_name', models.CharField(max_length=255)),
                    ('host_name', models.CharField(blank=True, max_length=100)),
                    ('target', models.CharField(blank=True, max_length=300, verbose_name='VNC endpoint')),
                    ('client_address', models.GenericIPAddressField(blank=True, null=True)),
                    ('opened_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ('closed_at', models.DateTimeField(blank=True, null=True)),
                    ('close_reason', models.CharField(blank=True, max_length=300)),
                    ('bytes_in', models.BigIntegerField(default=0, verbose_name='bytes from the VM')),
                    ('bytes_out', models.BigIntegerField(default=0, verbose_name='bytes to the VM')),
                    ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='virtfleet_console_sessions', to=settings.AUTH_USER_MODEL)),
                    ('vm', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='console_sessions', to='vms.vm')),
                ],
                options={
                    'db_table': 'vms_consolesession',
                    'ordering': ['-opened_at', '-id'],
                    'indexes': [models.Index(fields=['vm_uuid', '-opened_at'], name='vms_console_vm_uuid_6882e6_idx')],
                },
            ),
    
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_back),
    ]
