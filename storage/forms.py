"""The forms of the storage pages; the job kinds check the values again (storage.params)."""

from django import forms

from virt.storage import CREATABLE_TYPES

from .params import FS_FORMATS, NETFS_FORMATS


class PoolDefineForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="e.g. images, isos, fast-ssd")
    type = forms.ChoiceField(choices=[(t, t) for t in CREATABLE_TYPES])
    target_path = forms.CharField(required=False, max_length=1024, label="Directory (target path)",
                                  help_text="dir, fs, netfs: where the pool's files are on the host, e.g. /var/lib/libvirt/images")  # fmt: skip
    source_host = forms.CharField(
        required=False, max_length=255, label="NFS server", help_text="netfs: the server's name or address"
    )
    source_dir = forms.CharField(
        required=False, max_length=1024, label="Exported directory", help_text="netfs: e.g. /export/images"
    )
    source_device = forms.CharField(required=False, max_length=1024, label="Device",
                                    help_text="fs: the block device to mount; logical: the device of the volume group to build")  # fmt: skip
    source_name = forms.CharField(required=False, max_length=127, label="Volume group", help_text="logical: its name")
    source_format = forms.ChoiceField(required=False, label="Format",
                                      choices=[("", "default")] + [(f, f) for f in sorted(set(FS_FORMATS + NETFS_FORMATS))])  # fmt: skip
    build = forms.BooleanField(required=False, initial=True, label="Build it (make the directory, or the volume group)")
    start = forms.BooleanField(required=False, initial=True, label="Start it")
    autostart = forms.BooleanField(required=False, initial=True, label="Start it with the host")

    def params(self) -> dict:
        data = dict(self.cleaned_data)
        data.pop("name")
        return data


class VolumeCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    capacity = forms.CharField(max_length=32, label="Size", help_text="20G, 512M, 1.5T (powers of 1024)")
    format = forms.ChoiceField(choices=[("qcow2", "qcow2"), ("raw", "raw")])
    backing_volume = forms.IntegerField(required=False, label="Backing volume (qcow2 overlay)")
    preallocation = forms.ChoiceField(
        choices=[("none", "none (sparse)"), ("metadata", "metadata (qcow2)"), ("full", "full")]
    )

    def params(self) -> dict:
        data = dict(self.cleaned_data)
        data.pop("name")
        return data


class ResizeForm(forms.Form):
    capacity = forms.CharField(max_length=32, label="New size")


class CloneForm(forms.Form):
    name = forms.CharField(max_length=200, label="Name of the copy")
    format = forms.ChoiceField(choices=[("same", "same format"), ("qcow2", "qcow2"), ("raw", "raw")], required=False)


class CopyForm(forms.Form):
    target_pool = forms.IntegerField(label="To pool")
    name = forms.CharField(max_length=200, required=False, label="Name there (default: the same)")
    bandwidth = forms.IntegerField(required=False, min_value=0, label="At most MiB/s (empty: no limit)")


class DeleteVolumeForm(forms.Form):
    force = forms.BooleanField(required=False, label="Delete it even though VMs use it")
