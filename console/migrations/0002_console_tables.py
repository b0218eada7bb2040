"""The console session table gets the console app's name."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('console', '0001_initial'),
    ]

    operations = [
        migrations.RenameIndex(
            model_name='consolesession',
            new_name='console_con_vm_uuid_e3f8e1_idx',
            old_name='vms_console_vm_uuid_6882e6_idx',
        ),
        migrations.AlterModelTable(
            name='consolesession',
            table=None,
        ),
    ]
