"""Guest artifacts: a Debian cloud kernel and a ~1 MB busybox initramfs.

The cloud kernel (LZ4-compressed) boots ~2 s faster under TCG than the generic one.
It is fetched with `apt-get download` and unpacked with `dpkg-deb -x`: nothing is
installed on the machine. The initramfs turns a 128 MiB diskless TCG guest into
something that behaves like a VM: it answers the ACPI power button (busybox acpid
→ `poweroff -f`), shows a shell on the VGA console (VNC) and on the serial port,
and prints a banner once it is ready for ACPI requests.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from lab.errors import ImageError
from lab.media import build_media, load_media

log = logging.getLogger(__name__)

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
KERNEL_PACKAGE_RE = re.compile(r"\blinux-image-6\.1\.[0-9][^\s:]*-cloud-amd64\b")
BUSYBOX = "/bin/busybox"  # from busybox-static
# Modules the guest needs for the ACPI power button to reach acpid.
GUEST_MODULES = ("button", "evdev")
# Bump when the initramfs recipe below changes, so `prepare` rebuilds it.
INITRAMFS_RECIPE = 3
BANNER = "virtfleet lab guest {name} ready"
BANNER_RE = re.compile(r"virtfleet lab guest (\S+) ready")


@dataclass(frozen=True)
class Images:
    """Paths of the prepared artifacts (under `<base_dir>/images/`)."""

    kernel: str
    initrd: str
    kernel_package: str
    kernel_release: str
    iso: str = ""  # lab.media: a bootable ISO and disk image of the same guest
    disk: str = ""
    qcow2: str = ""


def images_dir(base_dir: str | os.PathLike[str]) -> Path:
    return Path(base_dir).resolve() / "images"


def load_images(base_dir: str | os.PathLike[str]) -> Images | None:
    """The prepared artifacts, or None if `prepare` has not (fully) run."""
    d = images_dir(base_dir)
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("initramfs_recipe") != INITRAMFS_RECIPE:
        return None
    images = Images(
        kernel=str(d / "vmlinuz"),
        initrd=str(d / "initrd.img"),
        kernel_package=manifest["kernel_package"],
        kernel_release=manifest["kernel_release"],
    )
    if not (os.path.isfile(images.kernel) and os.path.isfile(images.initrd)):
        return None
    media = load_media(d)
    return replace(images, iso=media.iso, disk=media.disk, qcow2=media.qcow2) if media else images


def prepare(base_dir: str | os.PathLike[str], *, force: bool = False) -> Images:
    """Build kernel + initramfs (and the boot media made of them) once under `<base_dir>/images/`;
    fast when done."""
    if not force and (images := load_images(base_dir)) is not None:
        if not images.iso:
            build_media(images_dir(base_dir), images.kernel, images.initrd)
            images = load_images(base_dir)
            assert images is not None
        return images
    d = images_dir(base_dir)
    d.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    package, release = _fetch_kernel(d, force=force)
    modules_dir = d / "modules"
    initrd = d / "initrd.img"
    _build_initramfs(initrd, modules_dir)
    build_media(d, str(d / "vmlinuz"), str(initrd), force=True)
    manifest = {
        "kernel_package": package,
        "kernel_release": release,
        "initramfs_recipe": INITRAMFS_RECIPE,
        "initramfs_bytes": initrd.stat().st_size,
        "built_at": time.time(),
    }
    (d / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log.info(
        "prepared %s (kernel %s) and a %d KiB initramfs in %.1fs",
        package,
        release,
        initrd.stat().st_size // 1024,
        time.monotonic() - started,
    )
    images = load_images(base_dir)
    assert images is not None
    return images


def resolve_kernel_package() -> str:
    """The exact linux-image-6.1.*-cloud-amd64 the metapackage points at."""
    out = _run(["apt-cache", "depends", KERNEL_METAPACKAGE], what="apt-cache depends")
    names = KERNEL_PACKAGE_RE.findall(out)
    if not names:
        raise ImageError(
            f"apt-cache does not know which kernel {KERNEL_METAPACKAGE} depends on "
            f"(output: {out.strip()[:300]!r}); run `apt-get update` and retry"
        )
    return names[0]


def _fetch_kernel(d: Path, *, force: bool) -> tuple[str, str]:
    """Download and unpack the kernel; keep only vmlinuz and the modules we need."""
    kernel_info = d / "kernel.json"
    modules_dir = d / "modules"
    if not force and kernel_info.is_file() and (d / "vmlinuz").is_file():
        info = json.loads(kernel_info.read_text())
        if all((modules_dir / f"{m}.ko").is_file() for m in info["modules"]):
            return info["package"], info["release"]
    package = resolve_kernel_package()
    with tempfile.TemporaryDirectory(dir=d, prefix=".kernel-") as tmp:
        log.info("downloading %s with apt-get download", package)
        # The _apt sandbox user cannot write into our directory; we are root anyway.
        _run(
            ["apt-get", "download", "-o", "APT::Sandbox::User=root", package],
            cwd=tmp,
            what=f"apt-get download {package}",
            hint="check the package mirror is reachable and run `apt-get update`",
        )
        debs = list(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise ImageError(f"apt-get download {package} produced {debs!r}, expected one .deb")
        root = Path(tmp) / "root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(root)], what="dpkg-deb -x")
        vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise ImageError(f"{debs[0].name} contains no /boot/vmlinuz-*")
        release = vmlinuz[0].name.removeprefix("vmlinuz-")
        kmod_root = root / "lib" / "modules" / release
        wanted = _with_dependencies(kmod_root, GUEST_MODULES)
        if modules_dir.exists():
            shutil.rmtree(modules_dir)
        modules_dir.mkdir()
        for name, path in wanted.items():
            data = path.read_bytes()
            if path.name.endswith(".ko.xz"):
                import lzma

                data = lzma.decompress(data)
            (modules_dir / f"{name}.ko").write_bytes(data)
        shutil.copyfile(vmlinuz[0], d / ".vmlinuz.tmp")
        os.replace(d / ".vmlinuz.tmp", d / "vmlinuz")
    info = {"package": package, "release": release, "modules": list(wanted)}
    kernel_info.write_text(json.dumps(info, indent=2) + "\n")
    return package, release


def _with_dependencies(kmod_root: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """Modules `names` plus everything they depend on, in load order (deps first).

    The unpacked package has no modules.dep (depmod runs at install time), so the
    `depends=` field of each module's .modinfo section is read directly.
    """
    index: dict[str, Path] = {}
    for path in kmod_root.rglob("*.ko*"):
        if path.name.endswith((".ko", ".ko.xz")):
            index[path.name.split(".ko")[0].replace("-", "_")] = path
    ordered: dict[str, Path] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key in ordered:
            return
        if key in chain:
            raise ImageError(f"circular module dependency: {' -> '.join((*chain, key))}")
        if key not in index:
            raise ImageError(f"kernel module {name} not found under {kmod_root}")
        for dep in _modinfo_depends(index[key]):
            visit(dep, (*chain, key))
        ordered[key] = index[key]

    for name in names:
        visit(name, ())
    return ordered


def _modinfo_depends(path: Path) -> list[str]:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        import lzma

        data = lzma.decompress(data)
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
    if not m or not m.group(1):
        return []
    return [d for d in m.group(1).decode().split(",") if d]


def _is_static_elf(path: str) -> bool:
    """True if `path` is an ELF executable without a PT_INTERP (dynamic loader)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
            return False
        (phoff,) = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


INIT = r"""#!/bin/sh
# PID 1 of the virtfleet lab guest until busybox init takes over.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /run /tmp /var/log
mount -t devpts devpts /dev/pts
exec </dev/console >/dev/console 2>&1
{insmods}
# The domain XML puts the guest's name into SMBIOS (system product).
name=$(cat /sys/class/dmi/id/product_name 2>/dev/null)
[ -n "$name" ] || name=virtfleet-guest
hostname "$name"
# acpid maps the ACPI power button to /etc/acpi/PWRF/00000080 (poweroff -f).
# Wait until it holds the input devices open: the banner promises that an ACPI
# shutdown sent from now on is not lost.
acpid -f -l /var/log/acpid.log &
i=0
while [ $i -lt 100 ] && ! ls -l /proc/$!/fd 2>/dev/null | grep -q /dev/input/event; do
    sleep 0.02; i=$((i+1))
done
banner="{banner}"
echo "$banner" >/dev/ttyS0
echo "$banner" >/dev/tty1
exec /sbin/init
"""

INITTAB = """\
::sysinit:/bin/true
tty1::respawn:-/bin/sh
ttyS0::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot -f
"""

PROFILE = """\
export PATH=/bin
export PS1='\\h:\\w# '
"""

POWER_BUTTON = """\
#!/bin/sh
echo "virtfleet lab guest $(hostname): ACPI power button, powering off" >/dev/console
poweroff -f
"""


def _build_initramfs(target: Path, modules_dir: Path) -> None:
    if not _is_static_elf(BUSYBOX):
        raise ImageError(f"{BUSYBOX} is not a static binary; install the busybox-static package")
    info = json.loads((target.parent / "kernel.json").read_text())
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".initramfs-") as tmp:
        root = Path(tmp) / "root"
        for sub in ("bin", "dev", "proc", "sys", "etc/acpi/PWRF", "lib/modules", "root", "var/log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        applets = _run([BUSYBOX, "--list"], what="busybox --list").split()
        for applet in applets:
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        (root / "sbin").symlink_to("bin")
        (root / "usr").mkdir()
        (root / "usr" / "bin").symlink_to("../bin")
        (root / "usr" / "sbin").symlink_to("../bin")
        # The kernel opens /dev/console for PID 1 before /init can mount devtmpfs.
        os.mknod(root / "dev" / "console", stat.S_IFCHR | 0o600, os.makedev(5, 1))
        insmods = []
        for name in info["modules"]:  # already in dependency order
            shutil.copyfile(modules_dir / f"{name}.ko", root / "lib" / "modules" / f"{name}.ko")
            insmods.append(f"insmod /lib/modules/{name}.ko")
        _write(
            root / "init",
            INIT.replace("{insmods}", "\n".join(insmods)).replace("{banner}", BANNER.format(name="$name")),
            0o755,
        )
        _write(root / "etc" / "inittab", INITTAB)
        _write(root / "etc" / "profile", PROFILE)
        _write(root / "etc" / "acpi" / "PWRF" / "00000080", POWER_BUTTON, 0o755)
        listing = subprocess.run(["find", ".", "-mindepth", "1"], cwd=root, check=True, capture_output=True).stdout
        names = b"\n".join(sorted(listing.splitlines())) + b"\n"
        archive = subprocess.run(
            ["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"],
            cwd=root,
            input=names,
            capture_output=True,
        )
        if archive.returncode != 0:
            raise ImageError(f"cpio failed: {archive.stderr.decode(errors='replace')[-500:]}")
        tmp_target = target.with_suffix(".tmp")
        with (
            open(tmp_target, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
        ):
            gz.write(archive.stdout)
        os.replace(tmp_target, target)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    path.chmod(mode)


def _run(cmd: list[str], *, what: str, cwd: str | None = None, hint: str = "") -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as e:
        raise ImageError(f"{what}: {e.filename} not found") from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        raise ImageError(f"{what} failed (exit {proc.returncode}): {tail}" + (f"; {hint}" if hint else ""))
    return proc.stdout
