"""The options of the snapshot jobs, checked with plain-words errors (names end up in URLs and in
libvirt's XML: only a safe alphabet is taken)."""

from __future__ import annotations

import re

from django.utils import timezone
from rest_framework import serializers

from jobs.params import Flag
from virt.snapshots import AFTER_REVERT, NAME_MAX

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:-]*$")
NAME_HELP = (f"1 to {NAME_MAX} letters, digits, '.', '_', '+', ':' or '-', starting with a letter or digit "
             "(no spaces, '/' or XML characters)")  # fmt: skip


def default_name() -> str:
    return timezone.localtime().strftime("snap-%Y%m%d-%H%M%S")


def check_name(value) -> str:
    """A snapshot name, or a ValidationError saying what a name may hold."""
    text = value.strip() if isinstance(value, str) else ""
    if not isinstance(value, str) or not text:
        raise serializers.ValidationError(f"name must be {NAME_HELP}.")
    if len(text) > NAME_MAX or not NAME_RE.match(text):
        shown = text[:40] + ("…" if len(text) > 40 else "")
        raise serializers.ValidationError(f"{shown!r} is not a usable snapshot name: use {NAME_HELP}.")
    return text


class NameField(serializers.Field):
    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", f"the snapshot's name: {NAME_HELP}")
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> str:
        return check_name(data)

    def to_representation(self, value) -> str:
        return str(value)


class CreateParams(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, max_length=400, default="",
                                 help_text=f"{NAME_HELP}; empty: snap-<date>-<time>")  # fmt: skip
    description = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="",
                                        trim_whitespace=True)  # fmt: skip
    memory = Flag(default=True, help_text="a running VM: include its memory (an internal snapshot always does)")
    disk_only = Flag(help_text="an external snapshot of the disks only (new overlay files), no memory")
    quiesce = Flag(help_text="freeze the guest's file systems through its agent (disk-only)")

    def validate_name(self, value: str) -> str:
        return check_name(value) if value.strip() else default_name()

    def validate_description(self, value: str) -> str:
        if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
            raise serializers.ValidationError("description must be plain text (no control characters).")
        return value


class RevertParams(serializers.Serializer):
    name = NameField()
    after = serializers.ChoiceField(choices=AFTER_REVERT, required=False, default="",
                                    help_text="the VM's state afterwards: running, paused, shutoff, or '' for "
                                              "the state the snapshot was taken in")  # fmt: skip
    force = Flag(help_text="revert even where libvirt asks for confirmation (an incompatible definition)")

    def validate_after(self, value: str) -> str:
        return value or ""


class DeleteParams(serializers.Serializer):
    name = NameField()
    children = Flag(help_text="also delete every snapshot below it")
