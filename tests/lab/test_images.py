"""The guest kernel and initramfs built by `lab.prepare`."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

import lab
from lab.images import KERNEL_PACKAGE_RE

pytestmark = pytest.mark.lab


def test_prepare_is_idempotent_and_keeps_the_built_files(lab_images: Path) -> None:
    base = lab_images.parent
    first = lab.prepare(base)
    mtimes = {p: Path(p).stat().st_mtime_ns for p in (first.kernel, first.initrd)}
    again = lab.prepare(base)
    assert again == first
    assert {p: Path(p).stat().st_mtime_ns for p in (again.kernel, again.initrd)} == mtimes
    assert KERNEL_PACKAGE_RE.fullmatch(first.kernel_package), first.kernel_package


def test_initramfs_is_small_and_holds_busybox_acpi_and_modules(lab_images: Path) -> None:
    initrd = lab_images / "initrd.img"
    assert initrd.stat().st_size < 2 * 1024 * 1024
    listing = (
        subprocess.run(
            ["cpio", "-t", "--quiet"], input=gzip.decompress(initrd.read_bytes()), capture_output=True, check=True
        )
        .stdout.decode()
        .split()
    )
    for path in (
        "init",
        "bin/busybox",
        "etc/inittab",
        "etc/acpi/PWRF/00000080",
        "dev/console",
        "lib/modules/button.ko",
        "lib/modules/evdev.ko",
    ):
        assert path in listing, path
