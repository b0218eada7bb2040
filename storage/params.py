"""What storage operations take, checked before libvirt is called: names, sizes with units, paths,
pool sources per type, and the option serializers of the storage job kinds."""

from __future__ import annotations

import ipaddress
import re

from rest_framework import serializers

from jobs.params import Flag

UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "kb": 10**3, "m": 2**20, "mib": 2**20, "mb": 10**6,
         "g": 2**30, "gib": 2**30, "gb": 10**9, "t": 2**40, "tib": 2**40, "tb": 10**12}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
MAX_SIZE = 2**50  # 1 PiB: anything larger is a typo
FS_FORMATS = ("auto", "ext2", "ext3", "ext4", "xfs", "vfat", "btrfs", "iso9660", "udf")
NETFS_FORMATS = ("nfs", "auto", "cifs", "glusterfs")


def parse_size(value) -> int:
    """Bytes from "20G", "512 MiB", "1.5T", 1048576 ("G" is GiB, "GB" 10^9); ValueError says why."""
    if isinstance(value, bool):
        raise ValueError("give a size such as 20G or 512 MiB")
    if isinstance(value, int):
        number, unit = float(value), ""
    else:
        match = _SIZE.match(str(value or ""))
        if not match:
            raise ValueError("give a size such as 20G or 512 MiB")
        number, unit = float(match.group(1)), match.group(2).lower()
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}: use K, M, G or T (powers of 1024), or KB, MB, GB, TB")
    size = int(number * UNITS[unit])
    if size <= 0:
        raise ValueError("the size must be more than 0")
    if size > MAX_SIZE:
        raise ValueError("the size is larger than 1 PiB")
    return size


def human(size: int) -> str:
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}".replace(".0 ", " ")
    return f"{size} B"


def check_name(name: str, what: str = "volume") -> str:
    name = (name or "").strip()
    if not NAME.match(name):
        raise serializers.ValidationError(
            f"A {what} name is 1 to 200 letters, digits, dots, dashes, underscores or plus signs, starting with a "
            "letter or digit (no slashes: a volume stays inside its pool)."
        )
    return name


def check_abs_path(path: str, field: str) -> str:
    path = (path or "").strip()
    if not path.startswith("/") or "\x00" in path or len(path) > 1024:
        raise serializers.ValidationError(
            {field: "Give an absolute path on the host, such as /var/lib/libvirt/images."}
        )
    if any(part == ".." for part in path.split("/")):
        raise serializers.ValidationError({field: "The path may not contain '..'."})
    if path.rstrip("/") in ("", "/etc", "/proc", "/sys", "/dev", "/boot", "/usr", "/bin", "/sbin", "/lib", "/root"):
        raise serializers.ValidationError({field: f"{path} is a system directory, not a place for a pool."})
    return path.rstrip("/") or "/"


def check_device(path: str, field: str = "source_device") -> str:
    path = (path or "").strip()
    if not re.match(r"^/dev/[A-Za-z0-9._/+-]+$", path) or ".." in path:
        raise serializers.ValidationError({field: "Give a block device, such as /dev/sdb or /dev/disk/by-id/…"})
    return path


def check_server(host: str) -> str:
    host = (host or "").strip()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not HOSTNAME.match(host):
        raise serializers.ValidationError({"source_host": "Give the server's host name or IP address."})
    return host


class SizeField(serializers.Field):
    """A size with units ("20G", "512 MiB") or a number of bytes."""

    def to_internal_value(self, data) -> int:
        try:
            return parse_size(data)
        except ValueError as exc:
            raise serializers.ValidationError(f"{self.field_name}: {exc}.") from None

    def to_representation(self, value) -> int:
        return int(value)


# --- options of the storage kinds ----------------------------------------------------------------------
class PoolDefineParams(serializers.Serializer):
    """A new pool: what its type needs, checked per type before libvirt sees it."""

    type = serializers.ChoiceField(choices=["dir", "fs", "netfs", "logical"])
    target_path = serializers.CharField(required=False, allow_blank=True, default="")
    source_host = serializers.CharField(required=False, allow_blank=True, default="")
    source_dir = serializers.CharField(required=False, allow_blank=True, default="")
    source_device = serializers.CharField(required=False, allow_blank=True, default="")
    source_name = serializers.CharField(required=False, allow_blank=True, default="")
    source_format = serializers.CharField(required=False, allow_blank=True, default="")
    build = Flag(help_text="make its storage (dir: the directory; logical: the volume group on the device)")
    start = Flag(default=True)
    autostart = Flag(default=True)

    def validate(self, data):
        kind = data["type"]
        checks = {"dir": self._dir, "fs": self._fs, "netfs": self._netfs, "logical": self._logical}
        checks[kind](data)
        unused = [f for f in ("source_host", "source_dir", "source_device", "source_name", "source_format")
                  if data.get(f) and f not in POOL_FIELDS[kind]]  # fmt: skip
        if unused:
            raise serializers.ValidationError({unused[0]: f"A {kind} pool takes no {unused[0].replace('_', ' ')}."})
        return data

    def _dir(self, data):
        data["target_path"] = check_abs_path(data["target_path"], "target_path")

    def _fs(self, data):
        data["source_device"] = check_device(data["source_device"])
        data["target_path"] = check_abs_path(data["target_path"], "target_path")
        data["source_format"] = _choice(data.get("source_format") or "auto", FS_FORMATS, "source_format")

    def _netfs(self, data):
        data["source_host"] = check_server(data["source_host"])
        data["source_dir"] = check_abs_path(data["source_dir"] or "/", "source_dir") if data["source_dir"] else "/"
        data["target_path"] = check_abs_path(data["target_path"], "target_path")
        data["source_format"] = _choice(data.get("source_format") or "nfs", NETFS_FORMATS, "source_format")

    def _logical(self, data):
        name = (data.get("source_name") or "").strip()
        if not re.match(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$", name):
            raise serializers.ValidationError({"source_name": "Give the volume group's name (letters, digits, +_.-)."})
        data["source_name"] = name
        if data.get("source_device"):
            data["source_device"] = check_device(data["source_device"])
        elif data.get("build"):
            raise serializers.ValidationError(
                {"source_device": "Building a logical pool makes a volume group: give its device."}
            )
        data["target_path"] = f"/dev/{name}"
        data["source_format"] = "lvm2"


POOL_FIELDS = {
    "dir": ("target_path",),
    "fs": ("source_device", "source_format", "target_path"),
    "netfs": ("source_host", "source_dir", "source_format", "target_path"),
    "logical": ("source_name", "source_device", "source_format"),
}


def _choice(value: str, choices: tuple[str, ...], field: str) -> str:
    if value not in choices:
        raise serializers.ValidationError({field: f"Choose one of {', '.join(choices)}."})
    return value


class VolumeCreateParams(serializers.Serializer):
    capacity = SizeField(help_text="size with units: 20G, 512M (powers of 1024), or bytes")
    format = serializers.ChoiceField(choices=["qcow2", "raw"], default="qcow2")
    backing_volume = serializers.IntegerField(required=False, allow_null=True, default=None,
                                              help_text="id of a volume of the same host: a qcow2 overlay on it")  # fmt: skip
    preallocation = serializers.ChoiceField(choices=["none", "metadata", "full"], default="none")

    def validate(self, data):
        if data["backing_volume"] and data["format"] != "qcow2":
            raise serializers.ValidationError("Only a qcow2 volume can have a backing volume.")
        if data["preallocation"] == "metadata" and data["format"] != "qcow2":
            raise serializers.ValidationError("Metadata preallocation is for qcow2 volumes; choose none or full.")
        return data


class ResizeParams(serializers.Serializer):
    capacity = SizeField(help_text="the new size (larger than the current one)")


class DeleteVolumeParams(serializers.Serializer):
    force = Flag(help_text="delete even though VMs use it (administrators only)")


class CloneParams(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="the copy's name, in the same pool")
    format = serializers.ChoiceField(choices=["same", "qcow2", "raw"], default="same")

    def validate_name(self, value):
        return check_name(value)


class CopyParams(serializers.Serializer):
    target_pool = serializers.IntegerField(help_text="id of a pool (on another host, or this one)")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="",
                                 help_text="its name there (default: the same)")  # fmt: skip
    bandwidth = serializers.IntegerField(min_value=0, max_value=100_000, required=False, default=0,
                                         help_text="MiB/s at most (0: as fast as the hosts go), to spare a busy network")  # fmt: skip

    def validate_name(self, value):
        return check_name(value) if value else ""


class UploadParams(serializers.Serializer):
    size = serializers.IntegerField(min_value=1, max_value=MAX_SIZE, help_text="bytes the file has")
    format = serializers.ChoiceField(choices=["auto", "raw", "qcow2", "iso"], default="auto",
                                     help_text="auto: as the image says (libvirt looks at it)")  # fmt: skip
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False, allow_blank=True, default="",
                                    help_text="the expected checksum: a different one fails the upload")  # fmt: skip
    overwrite = Flag(help_text="upload into the existing volume of that name (its data is replaced)")

    def validate_sha256(self, value):
        return value.lower()
