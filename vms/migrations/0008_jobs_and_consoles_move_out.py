"""Job, JobEvent and ConsoleSession now belong to the jobs and console apps (state only)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('vms', '0007_vm_observed_at'),
        ('jobs', '0001_initial'),
        ('console', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.RemoveField(
                model_name='job',
                name='host',
            ),
            migrations.RemoveField(
                model_name='job',
                name='parent',
            ),
            migrations.RemoveField(
                model_name='job',
                name='requested_by',
            ),
            migrations.RemoveField(
                model_name='job',
                name='target_host',
            ),
            migrations.RemoveField(
                model_name='job',
                name='vm',
            ),
            migrations.RemoveField(
                model_name='jobevent',
                name='job',
            ),
            migrations.DeleteModel(
                name='ConsoleSession',
            ),
            migrations.DeleteModel(
                name='Job',
            ),
            migrations.DeleteModel(
                name='JobEvent',
            ),
    
            ],
            database_operations=[],
        ),
    ]
