"""Job and JobEvent move from vms to the jobs app, their rows and tables untouched."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

NEW_APP = 'jobs'
MODELS = ['job', 'jobevent']


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
        ('hosts', '0003_permissions_encrypted_credentials'),
        ('vms', '0007_vm_observed_at'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The tables stay where they are (vms_*): only Django's idea of which app owns them moves.
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='Job',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('kind', models.CharField(choices=[('start', 'Start'), ('shutdown', 'Shut down'), ('force_off', 'Force off'), ('reboot', 'Reboot'), ('reset', 'Reset'), ('suspend', 'Suspend'), ('resume', 'Resume'), ('save', 'Save state'), ('autostart_on', 'Autostart on'), ('autostart_off', 'Autostart off'), ('delete', 'Delete'), ('migrate', 'Migrate'), ('maintenance', 'Enter maintenance')], db_index=True, max_length=24)),
                    ('vm_uuid', models.UUIDField(blank=True, db_index=True, null=True)),
                    ('vm_name', models.CharField(blank=True, max_length=255)),
                    ('host_name', models.CharField(blank=True, max_length=100)),
                    ('params', models.JSONField(blank=True, default=dict)),
                    ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], db_index=True, default='queued', max_length=16)),
                    ('progress', models.PositiveSmallIntegerField(default=0)),
                    ('message', models.CharField(blank=True, max_length=500)),
                    ('error', models.TextField(blank=True)),
                    ('error_code', models.CharField(blank=True, max_length=40)),
                    ('result', models.JSONField(blank=True, default=dict)),
                    ('cancel_requested', models.BooleanField(default=False)),
                    ('postcopy_requested', models.BooleanField(default=False)),
                    ('requested_by_name', models.CharField(blank=True, max_length=150)),
                    ('requested_from', models.GenericIPAddressField(blank=True, null=True)),
                    ('queued_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ('started_at', models.DateTimeField(blank=True, null=True)),
                    ('finished_at', models.DateTimeField(blank=True, null=True)),
                    ('celery_task_id', models.CharField(blank=True, max_length=64)),
                    ('worker', models.CharField(blank=True, max_length=255)),
                    ('attempts', models.PositiveSmallIntegerField(default=0)),
                    ('host', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='jobs', to='hosts.host')),
                    ('parent', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='children', to='jobs.job')),
                    ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='virtfleet_jobs', to=settings.AUTH_USER_MODEL)),
                    ('target_host', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='incoming_jobs', to='hosts.host')),
                    ('vm', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='jobs', to='vms.vm')),
                ],
                options={
                    'db_table': 'vms_job',
                    'ordering': ['-queued_at', '-id'],
                },
            ),
            migrations.CreateModel(
                name='JobEvent',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], max_length=16)),
                    ('progress', models.PositiveSmallIntegerField(default=0)),
                    ('message', models.CharField(blank=True, max_length=500)),
                    ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='jobs.job')),
                ],
                options={
                    'db_table': 'vms_jobevent',
                    'ordering': ['at', 'id'],
                },
            ),
            migrations.AddIndex(
                model_name='job',
                index=models.Index(fields=['vm_uuid', '-queued_at'], name='vms_job_vm_uuid_d0e1cc_idx'),
            ),
            migrations.AddIndex(
                model_name='job',
                index=models.Index(fields=['status', '-queued_at'], name='vms_job_status_44bbaa_idx'),
            ),
            migrations.AddConstraint(
                model_name='job',
                constraint=models.UniqueConstraint(condition=models.Q(('status__in', ['queued', 'running'])), fields=('vm_uuid',), name='one_active_job_per_vm'),
            ),
    
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_back),
    ]
