"""What creating and changing a VM takes, checked before anything is made: names, sizes, the install
source and its volumes, NICs, cloud-init (its password hashed at once: plain text is never kept),
pasted XML; the option serializers of the provisioning job kinds."""

from __future__ import annotations

import re

from rest_framework import serializers

from jobs.params import Flag, WholeNumber
from networks.params import check_mac
from storage.params import SizeField
from virt import seed as vseed
from virt.builder import DISK_PREFIX, NIC_MODELS

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HOSTNAME = re.compile(r"^(?=.{1,63}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")
USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
BRIDGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")
TARGET = re.compile(r"^(vd|sd|hd|fd|xvd)[a-z]{1,2}$")
SSH_KEY = re.compile(r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
                     r" [A-Za-z0-9+/=]{16,}( .*)?$")  # fmt: skip
MAX_XML = 1024 * 1024
MAX_USER_DATA = 64 * 1024  # what goes into a seed ISO; cloud-init itself reads far larger
MAX_MEMORY_MIB = 16 * 1024 * 1024  # 16 TiB
MAX_VCPUS = 4096
SOURCES = ("iso", "import", "cloud", "none")
SOURCE_WORDS = {"iso": "install from an ISO", "import": "import an existing disk image",
                "cloud": "a cloud image with cloud-init", "none": "an empty disk (network boot)"}  # fmt: skip
DISK_BUSES = tuple(b for b in DISK_PREFIX if b in ("virtio", "scsi", "sata", "ide", "usb"))


def check_vm_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME.match(name):
        raise serializers.ValidationError(
            "A VM name is 1 to 63 letters, digits, dots, dashes or underscores, starting with a letter or digit."
        )
    return name


def ssh_keys(text) -> list[str]:
    """Public keys from a list or from text with one key per line; ValidationError names a bad line."""
    lines = text if isinstance(text, list) else str(text or "").splitlines()
    keys = []
    for n, line in enumerate(lines, 1):
        line = str(line).strip()
        if not line or line.startswith("#"):
            continue
        if not SSH_KEY.match(line):
            raise serializers.ValidationError(
                f"line {n} is not an SSH public key (it should start with ssh-ed25519, ssh-rsa or ecdsa-sha2-…)."
            )
        keys.append(line)
    return keys


class KeysField(serializers.Field):
    """SSH public keys: a list, or text with one per line."""

    def to_internal_value(self, data) -> list[str]:
        return ssh_keys(data)

    def to_representation(self, value):
        return list(value)


class NicParams(serializers.Serializer):
    network = serializers.CharField(required=False, allow_blank=True, default="", help_text="a virtual network's name")
    bridge = serializers.CharField(required=False, allow_blank=True, default="", help_text="or a host bridge")
    model = serializers.ChoiceField(choices=["", *NIC_MODELS], required=False, default="",
                                    help_text="empty: what the OS preset recommends")  # fmt: skip

    def validate(self, data):
        if bool(data["network"]) == bool(data["bridge"]):
            raise serializers.ValidationError("A NIC is on a network or on a host bridge: give one of them.")
        if data["bridge"] and not BRIDGE.match(data["bridge"]):
            raise serializers.ValidationError("A bridge name is 1 to 15 letters, digits, dots, dashes or colons.")
        return data


class CreateParams(serializers.Serializer):
    """A new VM, like virt-install's options (the form and POST /api/vms/create/ take the same)."""

    name = serializers.CharField(max_length=63)
    os = serializers.CharField(required=False, allow_blank=True, default="",
                               help_text="osinfo-db short id or id (debian12, win11...); empty: a generic modern OS")  # fmt: skip
    source = serializers.ChoiceField(choices=list(SOURCES), default="iso")
    iso_volume = serializers.IntegerField(required=False, allow_null=True, default=None,
                                          help_text="source iso: id of the ISO volume (CD-ROM, booted first)")  # fmt: skip
    image_volume = serializers.IntegerField(required=False, allow_null=True, default=None,
                                            help_text="source import: the disk image used in place; source cloud: "
                                                      "the cloud image a new qcow2 overlay is backed by")  # fmt: skip
    disk_pool = serializers.IntegerField(required=False, allow_null=True, default=None,
                                         help_text="id of the pool new disks (and the seed) go to")  # fmt: skip
    disk_size = SizeField(
        required=False,
        default=0,
        help_text="size of the new disk (iso, none, cloud): 20G; empty: the OS preset's recommendation",
    )
    disk_format = serializers.ChoiceField(choices=["qcow2", "raw"], default="qcow2")
    disk_bus = serializers.ChoiceField(choices=["", *DISK_BUSES], required=False, default="",
                                       help_text="empty: what the OS preset recommends")  # fmt: skip
    extra_disks = serializers.ListField(child=SizeField(), required=False, default=list, max_length=8,
                                        help_text="sizes of more empty disks in the same pool")  # fmt: skip
    vcpus = WholeNumber(unit="vCPUs", min_value=1, max_value=MAX_VCPUS, default=0,
                        help_text="0: the OS preset's recommendation")  # fmt: skip
    max_vcpus = WholeNumber(unit="vCPUs", min_value=0, max_value=MAX_VCPUS, default=0,
                            help_text="more than vcpus: vCPUs can be added while it runs")  # fmt: skip
    memory_mib = WholeNumber(unit="MiB", min_value=0, max_value=MAX_MEMORY_MIB, default=0,
                             help_text="0: the OS preset's recommendation")  # fmt: skip
    firmware = serializers.ChoiceField(choices=["", "bios", "efi"], required=False, default="",
                                       help_text="empty: the OS preset's, where the host offers it")  # fmt: skip
    secure_boot = Flag()
    machine = serializers.CharField(required=False, allow_blank=True, default="", max_length=64,
                                    help_text="q35, pc or a versioned name; empty: q35 where the host has it")  # fmt: skip
    virttype = serializers.ChoiceField(choices=["", "kvm", "qemu", "test"], required=False, default="",
                                       help_text="empty: kvm where the host has it, else qemu")  # fmt: skip
    nics = NicParams(many=True, required=False, default=None,
                     help_text="null: one NIC on the host's default network (or its first running one)")  # fmt: skip
    graphics = Flag(default=True, help_text="VNC with a generated password (never shown)")
    serial = Flag(default=True, help_text="a serial console")
    autostart = Flag()
    start = Flag(default=True, help_text="start it when it is made")
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    # cloud-init (source cloud)
    ci_hostname = serializers.CharField(required=False, allow_blank=True, default="", max_length=63)
    ci_user = serializers.CharField(required=False, allow_blank=True, default="", max_length=32)
    ci_password = serializers.CharField(required=False, allow_blank=True, default="", write_only=True,
                                        max_length=256, style={"input_type": "password"},
                                        help_text="kept only as a SHA-512 crypt hash")  # fmt: skip
    ci_ssh_keys = KeysField(required=False, default=list, help_text="public keys, a list or one per line")
    ci_user_data = serializers.CharField(required=False, allow_blank=True, default="", max_length=MAX_USER_DATA,
                                         trim_whitespace=False)  # fmt: skip
    ci_network_config = serializers.CharField(required=False, allow_blank=True, default="",
                                              max_length=MAX_USER_DATA, trim_whitespace=False)  # fmt: skip

    def validate_name(self, value):
        return check_vm_name(value)

    def validate_ci_hostname(self, value):
        value = value.strip()
        if value and not HOSTNAME.match(value):
            raise serializers.ValidationError("A host name is 1 to 63 letters, digits or dashes (no dots).")
        return value

    def validate_ci_user(self, value):
        value = value.strip()
        if value and not USER.match(value):
            raise serializers.ValidationError(
                "A user name is up to 32 lower-case letters, digits, dashes or underscores."
            )
        if value == "root":
            raise serializers.ValidationError("Give an ordinary user (with sudo), not root.")
        return value

    def validate_ci_user_data(self, value):
        why = vseed.check_user_data(value) if value.strip() else ""
        if why:
            raise serializers.ValidationError(f"user-data: {why}")
        return value

    def validate_ci_network_config(self, value):
        why = vseed.check_network_config(value) if value.strip() else ""
        if why:
            raise serializers.ValidationError(f"network-config: {why}")
        return value

    def validate(self, data):
        source = data["source"]
        if source == "iso" and not data["iso_volume"]:
            raise serializers.ValidationError({"iso_volume": "Choose the ISO to install from."})
        if source in ("import", "cloud") and not data["image_volume"]:
            raise serializers.ValidationError({"image_volume": "Choose the disk image."})
        if source in ("iso", "none", "cloud") and not data["disk_pool"]:
            raise serializers.ValidationError({"disk_pool": "Choose the pool for the new disk."})
        if data["extra_disks"] and not data["disk_pool"]:
            raise serializers.ValidationError({"disk_pool": "Choose the pool for the extra disks."})
        if data["max_vcpus"] and data["vcpus"] and data["max_vcpus"] < data["vcpus"]:
            raise serializers.ValidationError({"max_vcpus": "The maximum cannot be below the vCPUs it starts with."})
        if data["secure_boot"] and data["firmware"] == "bios":
            raise serializers.ValidationError({"secure_boot": "Secure boot needs UEFI firmware."})
        cloud = [f for f in ("ci_hostname", "ci_user", "ci_password", "ci_ssh_keys", "ci_user_data",
                             "ci_network_config") if data.get(f)]  # fmt: skip
        if cloud and source != "cloud":
            raise serializers.ValidationError(
                {cloud[0]: "cloud-init settings are for a cloud image; choose that install source."}
            )
        if (data["ci_password"] or data["ci_ssh_keys"]) and not data["ci_user"] and not data["ci_user_data"]:
            raise serializers.ValidationError({"ci_user": "Give the user the password or keys are for."})
        password = data.pop("ci_password")
        data["ci_password_hash"] = vseed.hash_password(password) if password else ""
        if data["nics"] is not None:
            data["nics"] = [dict(n) for n in data["nics"]]
        return data


class DefineXmlParams(serializers.Serializer):
    """A domain XML to define (persistent, like ``virsh define``) or create (transient, ``virsh create``)."""

    xml = serializers.CharField(max_length=MAX_XML, trim_whitespace=False)
    transient = Flag(help_text="create a transient VM (started now, gone when it stops)")
    start = Flag(help_text="start it once defined (a transient VM always starts)")
    autostart = Flag(help_text="start it with its host (persistent only)")

    def validate(self, data):
        if data["transient"] and data["autostart"]:
            raise serializers.ValidationError({"autostart": "A transient VM cannot start with its host."})
        return data


class EditXmlParams(serializers.Serializer):
    xml = serializers.CharField(max_length=MAX_XML, trim_whitespace=False)


class VcpusParams(serializers.Serializer):
    vcpus = WholeNumber(unit="vCPUs", min_value=1, max_value=MAX_VCPUS, default=1)


class MemoryParams(serializers.Serializer):
    memory_mib = WholeNumber(unit="MiB", min_value=16, max_value=MAX_MEMORY_MIB, default=0)

    def validate_memory_mib(self, value):
        if not value:
            raise serializers.ValidationError("Give the memory in MiB.")
        return value


class DiskAttachParams(serializers.Serializer):
    volume = serializers.IntegerField(required=False, allow_null=True, default=None,
                                      help_text="an existing volume of the VM's host (id)")  # fmt: skip
    pool = serializers.IntegerField(required=False, allow_null=True, default=None,
                                    help_text="or a new volume in this pool (id) …")  # fmt: skip
    size = SizeField(required=False, default=0, help_text="… of this size")
    format = serializers.ChoiceField(choices=["qcow2", "raw"], default="qcow2")
    bus = serializers.ChoiceField(choices=list(DISK_BUSES), default="virtio")
    device = serializers.ChoiceField(choices=["disk", "cdrom"], default="disk")
    live = Flag(default=True, help_text="plug it into the running VM too (else at the next boot)")

    def validate(self, data):
        if bool(data["volume"]) == bool(data["pool"]):
            raise serializers.ValidationError("Choose an existing volume, or a pool and a size for a new one.")
        if data["pool"] and not data["size"]:
            raise serializers.ValidationError({"size": "Give the size of the new volume (such as 10G)."})
        if data["device"] == "cdrom" and data["pool"]:
            raise serializers.ValidationError({"device": "A CD-ROM takes an existing ISO volume."})
        return data


class DiskDetachParams(serializers.Serializer):
    target = serializers.CharField(max_length=8)
    delete_volume = Flag(help_text="also delete its volume (never one another VM uses)")

    def validate_target(self, value):
        if not TARGET.match(value):
            raise serializers.ValidationError("Give the disk's target name, such as vdb.")
        return value


class NicAttachParams(NicParams):
    mac = serializers.CharField(required=False, allow_blank=True, default="", help_text="empty: a new one")
    live = Flag(default=True, help_text="plug it into the running VM too (else at the next boot)")

    def validate_mac(self, value):
        return check_mac(value) if value else ""


class NicDetachParams(serializers.Serializer):
    mac = serializers.CharField()

    def validate_mac(self, value):
        return check_mac(value)


class MediaParams(serializers.Serializer):
    target = serializers.CharField(max_length=8, help_text="the CD-ROM, such as sda or hdc")
    volume = serializers.IntegerField(required=False, allow_null=True, default=None,
                                      help_text="the ISO volume to insert (id); null ejects")  # fmt: skip

    def validate_target(self, value):
        if not TARGET.match(value):
            raise serializers.ValidationError("Give the CD-ROM's target name, such as sda.")
        return value


class BootOrderParams(serializers.Serializer):
    order = serializers.ListField(child=serializers.CharField(max_length=32), min_length=1, max_length=32,
                                  help_text="disk targets and NIC MACs, first boot device first")  # fmt: skip

    def validate_order(self, value):
        seen = []
        for key in value:
            key = key.strip().lower()
            if not (TARGET.match(key) or re.match(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", key)):
                raise serializers.ValidationError(f"{key[:32]!r} is neither a disk target (vda) nor a MAC.")
            if key in seen:
                raise serializers.ValidationError(f"{key} is named twice.")
            seen.append(key)
        return seen


class RenameParams(serializers.Serializer):
    name = serializers.CharField(max_length=63)

    def validate_name(self, value):
        return check_vm_name(value)


class DescribeParams(serializers.Serializer):
    title = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def validate_title(self, value):
        if "\n" in value:
            raise serializers.ValidationError("A title is one line.")
        return value


class CloneDiskParams(serializers.Serializer):
    target = serializers.CharField(max_length=8, help_text="the disk (vda...) this choice is for")
    pool = serializers.IntegerField(required=False, allow_null=True, default=None,
                                    help_text="id of the pool its copy goes to; null: the default")  # fmt: skip

    def validate_target(self, value):
        if not TARGET.match(value):
            raise serializers.ValidationError("Give the disk's target name, such as vda.")
        return value


class CloneParams(serializers.Serializer):
    """A clone of a VM, like virt-clone (the clone form and POST /api/vms/<uuid>/clone/ take the same)."""

    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=63,
                                 help_text="empty: <source>-clone (then -clone1...), as virt-clone --auto-clone")  # fmt: skip
    host = serializers.IntegerField(required=False, allow_null=True, default=None,
                                    help_text="id of the host the clone goes to; null: the source's")  # fmt: skip
    mode = serializers.ChoiceField(choices=["full", "linked"], default="full",
                                   help_text="full: every disk copied; linked: a qcow2 overlay on each source disk")  # fmt: skip
    running = serializers.ChoiceField(choices=["", "pause", "live"], required=False, default="",
                                      help_text="a running source: pause it while copying (it resumes after, "
                                                "whatever happens), or copy live (block copy)")  # fmt: skip
    freeze_source = Flag(help_text="linked clone of a VM that is not a template: the source gets its own new "
                                   "overlay (its definition changes) and its disks become a read-only base")  # fmt: skip
    disks = CloneDiskParams(many=True, required=False, default=list, max_length=32,
                            help_text="per copied disk, the pool its copy goes to")  # fmt: skip
    bandwidth = WholeNumber(unit="MiB/s", min_value=0, max_value=1_000_000, default=0,
                            help_text="at most this much copied per second (0: no limit); a limited copy is "
                                      "streamed and stops at once when cancelled")  # fmt: skip
    start = Flag(help_text="start the clone once it is defined")

    def validate_name(self, value):
        return check_vm_name(value) if value.strip() else ""

    def validate_disks(self, value):
        targets = [d["target"] for d in value]
        if len(set(targets)) != len(targets):
            raise serializers.ValidationError("Each disk is named once.")
        return [dict(d) for d in value]

    def validate(self, data):
        if data["mode"] == "linked" and data["bandwidth"]:
            raise serializers.ValidationError(
                {"bandwidth": "A linked clone copies nothing: it needs no bandwidth limit."}
            )
        return data
