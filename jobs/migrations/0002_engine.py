"""The job engine's columns: any object can be locked (lock_key), jobs carry a version for
browsers, parents can wait for their children; kinds are registered in code (no choices)."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('hosts', '0004_host_version'),
        ('jobs', '0001_initial'),
        ('vms', '0008_jobs_and_consoles_move_out'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='job',
            name='one_active_job_per_vm',
        ),
        migrations.RenameIndex(
            model_name='job',
            new_name='jobs_job_vm_uuid_e319c4_idx',
            old_name='vms_job_vm_uuid_d0e1cc_idx',
        ),
        migrations.RenameIndex(
            model_name='job',
            new_name='jobs_job_status_77c499_idx',
            old_name='vms_job_status_44bbaa_idx',
        ),
        migrations.AddField(
            model_name='job',
            name='awaiting_children',
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name='job',
            name='lock_key',
            field=models.CharField(blank=True, max_length=100, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='version',
            field=models.PositiveBigIntegerField(default=1),
        ),
        migrations.AlterField(
            model_name='job',
            name='kind',
            field=models.CharField(db_index=True, max_length=40),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(fields=['parent', 'status'], name='jobs_job_parent__9011bb_idx'),
        ),
    ]
