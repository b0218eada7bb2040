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
        # the NIC: virtio PCI transport and virtio-net (with their dependencies), its DHCP client loop
        "lib/modules/virtio_pci.ko",
        "lib/modules/virtio_net.ko",
        "lib/modules/net_failover.ko",
        "bin/vf-net",
        "etc/udhcpc.script",
        # disks and CD-ROMs (their modules packed, see below), their watcher, cloud mode's NoCloud reader
        "lib/modules/disk-modules.tar.gz",
        "bin/vf-disk",
        "bin/vf-cloud",
        "bin/vf-nocloud",
        "etc/vf-nocloud.awk",
        "etc/vf-mime.awk",
    ):
        assert path in listing, path


def test_disk_modules_are_packed_in_the_initramfs_for_after_the_banner(lab_images: Path) -> None:
    import io
    import json
    import tarfile

    info = json.loads((lab_images / "kernel.json").read_text())
    archive = subprocess.run(
        ["cpio", "-i", "--quiet", "--to-stdout", "lib/modules/disk-modules.tar.gz"],
        input=gzip.decompress((lab_images / "initrd.img").read_bytes()),
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        packed = set(tar.getnames())
    # only what no NIC needs: virtio's transport stays loose, vf-net loads it too
    expected = {f"{m}.ko" for m in info["block_modules"] if m not in info["net_modules"]}
    assert packed == expected
    assert {"virtio_blk.ko", "virtio_scsi.ko", "sd_mod.ko", "sr_mod.ko", "ata_piix.ko", "isofs.ko", "vfat.ko"} <= packed
    if "ahci" in info["modules"]:  # AHCI built from the kernel's source: the cloud kernel lacks it
        assert {"ahci.ko", "libahci.ko"} <= packed


def test_kernel_json_records_the_module_set_so_a_new_one_refetches(lab_images: Path) -> None:
    import json

    from lab.images import BLOCK_MODULES, GUEST_MODULES, NIC_MODULES

    info = json.loads((lab_images / "kernel.json").read_text())
    assert info["wanted"] == list(dict.fromkeys((*GUEST_MODULES, *NIC_MODULES, *BLOCK_MODULES)))
    assert info["boot_modules"] == ["button", "evdev"]
    # Dependencies load first: virtio before virtio_pci, failover before net_failover before virtio_net.
    order = info["modules"]
    assert order.index("virtio") < order.index("virtio_pci") < order.index("virtio_net")
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")
    assert order.index("scsi_mod") < order.index("libata") < order.index("ata_piix")
    assert order.index("fat") < order.index("vfat")
    # after the banner: the NIC's by vf-net, the disks' by vf-disk (both with the virtio transport)
    assert "virtio_net" in info["net_modules"] and "ahci" not in info["net_modules"]
    assert {"virtio_pci", "virtio_blk", "sr_mod", "ata_piix", "isofs"} <= set(info["block_modules"])


def test_the_ahci_driver_the_cloud_kernel_lacks_is_built_for_it(lab_images: Path) -> None:
    import json

    info = json.loads((lab_images / "kernel.json").read_text())
    if "ahci" not in info["modules"]:
        pytest.fail(
            "the lab kernel was prepared without its AHCI driver (SATA): ./virtfleet setup installs make, "
            "gcc-12, libelf1 and xz-utils to build it; see `python -m lab prepare --force`"
        )
    assert info["built_from_source"] == ["ahci", "libahci"]
    order = info["block_modules"]
    assert order.index("libata") < order.index("libahci") < order.index("ahci")
    # built against that kernel build: its vermagic names the cloud kernel's release
    ko = (lab_images / "modules" / "ahci.ko").read_bytes()
    assert f"vermagic={info['release']} ".encode() in ko
