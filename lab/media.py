"""Bootable media made from the lab's kernel and initramfs, for every lab host's storage pool:

- ``lab-boot.iso``: an ISO 9660 image booting through ISOLINUX (El Torito, no emulation), as a
  distribution's installer ISO does — what "install from an ISO" uses;
- ``lab-disk.raw`` / ``lab-disk.qcow2``: a 32 MiB disk with one FAT file system (no partition table)
  booting through SYSLINUX — what "import a disk image" and clones use;
- ``lab-cloud.qcow2``: the same disk whose kernel command line adds ``vf.cloud``: a tiny "cloud
  image" that reads a cloud-init NoCloud seed (a ``cidata`` ISO or vfat volume) before its banner,
  takes its hostname from it and prints what it was given (see lab.images).

Both boot the same busybox guest as the diskless guests (banner, ACPI power button, serial shell),
in 3 to 7 s under TCG. Built without root-only tools (no loop mounts): xorriso, mtools + syslinux.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab.errors import ImageError

MEDIA_RECIPE = 2
ISO_NAME = "lab-boot.iso"
DISK_NAME = "lab-disk.raw"
QCOW2_NAME = "lab-disk.qcow2"
CLOUD_NAME = "lab-cloud.qcow2"
DISK_MIB = 32
CMDLINE = "console=tty0 console=ttyS0 quiet"
CLOUD_CMDLINE = f"{CMDLINE} vf.cloud"
ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
PROGRAMS = {"xorriso": "xorriso", "syslinux": "syslinux", "mcopy": "mtools", "mkfs.vfat": "dosfstools",
            "qemu-img": "qemu-utils"}  # fmt: skip
BOOT_CFG_TEMPLATE = """DEFAULT lab
PROMPT 0
TIMEOUT 1
LABEL lab
  KERNEL /vmlinuz
  APPEND initrd=/initrd.img {cmdline}
"""
BOOT_CFG = BOOT_CFG_TEMPLATE.format(cmdline=CMDLINE)
CLOUD_BOOT_CFG = BOOT_CFG_TEMPLATE.format(cmdline=CLOUD_CMDLINE)


@dataclass(frozen=True)
class Media:
    iso: str
    disk: str
    qcow2: str
    cloud: str


def missing_programs() -> list[str]:
    """Debian packages to install for building the media (empty when all is there)."""
    missing = {pkg for prog, pkg in PROGRAMS.items() if shutil.which(prog) is None}
    if not ISOLINUX.exists():
        missing.add("isolinux")
    if not LDLINUX.exists():
        missing.add("syslinux-common")
    return sorted(missing)


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise ImageError(f"{what} failed ({result.returncode}): {result.stderr.strip()[-500:]}")


def load_media(images_dir: Path) -> Media | None:
    try:
        manifest = json.loads((images_dir / "media.json").read_text())
    except (OSError, ValueError):
        return None
    media = Media(iso=str(images_dir / ISO_NAME), disk=str(images_dir / DISK_NAME), qcow2=str(images_dir / QCOW2_NAME),
                  cloud=str(images_dir / CLOUD_NAME))  # fmt: skip
    if manifest.get("recipe") != MEDIA_RECIPE or not all(
        Path(p).is_file() for p in (media.iso, media.disk, media.qcow2, media.cloud)
    ):
        return None
    return media


def build_media(images_dir: Path, kernel: str, initrd: str, *, force: bool = False) -> Media:
    """The ISO and the disk images, built once next to the kernel and initramfs."""
    if not force and (media := load_media(images_dir)) is not None:
        return media
    missing = missing_programs()
    if missing:
        raise ImageError(f"building the lab's boot media needs: apt-get install {' '.join(missing)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vf-media-") as tmp:
        root = Path(tmp)
        _build_iso(root / "iso", images_dir / ISO_NAME, kernel, initrd)
        _build_disk(root / "disk.raw", images_dir / DISK_NAME, kernel, initrd)
        _build_disk(root / "cloud.raw", root / "cloud-disk.raw", kernel, initrd, CLOUD_BOOT_CFG)
        _run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(images_dir / DISK_NAME),
              str(images_dir / QCOW2_NAME)], "qemu-img convert")  # fmt: skip
        _run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(root / "cloud-disk.raw"),
              str(images_dir / CLOUD_NAME)], "qemu-img convert (the cloud image)")  # fmt: skip
    (images_dir / "media.json").write_text(json.dumps({"recipe": MEDIA_RECIPE, "built_at": time.time(),
                                                       "seconds": round(time.monotonic() - started, 1)}) + "\n")  # fmt: skip
    media = load_media(images_dir)
    assert media is not None
    return media


def _build_iso(tree: Path, target: Path, kernel: str, initrd: str) -> None:
    (tree / "isolinux").mkdir(parents=True)
    shutil.copy(ISOLINUX, tree / "isolinux" / "isolinux.bin")
    shutil.copy(LDLINUX, tree / "isolinux" / "ldlinux.c32")
    (tree / "isolinux" / "isolinux.cfg").write_text(BOOT_CFG)
    shutil.copy(kernel, tree / "vmlinuz")
    shutil.copy(initrd, tree / "initrd.img")
    partial = target.with_suffix(".partial")
    _run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "VIRTFLEET_LAB", "-o", str(partial),
          "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
          "-boot-info-table", "-J", "-R", str(tree)], "xorriso (the lab's boot ISO)")  # fmt: skip
    partial.replace(target)


def _build_disk(scratch: Path, target: Path, kernel: str, initrd: str, boot_cfg: str = BOOT_CFG) -> None:
    _run(["mkfs.vfat", "-C", "-n", "VFLAB", str(scratch), str(DISK_MIB * 1024)], "mkfs.vfat (the lab's boot disk)")
    cfg = scratch.parent / "syslinux.cfg"
    cfg.write_text(boot_cfg)
    _run(["mcopy", "-i", str(scratch), kernel, "::vmlinuz"], "mcopy vmlinuz")
    _run(["mcopy", "-i", str(scratch), initrd, "::initrd.img"], "mcopy initrd.img")
    _run(["mcopy", "-i", str(scratch), str(cfg), "::syslinux.cfg"], "mcopy syslinux.cfg")
    _run(["syslinux", "--install", str(scratch)], "syslinux (the lab's boot disk)")
    shutil.move(str(scratch), target)
