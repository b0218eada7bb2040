"""Existing jobs get the lock they had: a VM's jobs lock the VM, maintenance jobs their host.

On its own, so PostgreSQL does not alter the table in the transaction that updated its rows."""

from django.db import migrations


def fill_lock_keys(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    for job in Job.objects.filter(lock_key__isnull=True).only("pk", "vm_uuid", "host_id", "kind").iterator():
        if job.vm_uuid:
            key = f"vm:{job.vm_uuid}"
        elif job.kind == "maintenance" and job.host_id:
            key = f"host:{job.host_id}"
        else:
            continue
        Job.objects.filter(pk=job.pk).update(lock_key=key)



class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0002_engine"),
    ]

    operations = [
        migrations.RunPython(fill_lock_keys, migrations.RunPython.noop),
    ]
