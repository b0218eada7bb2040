"""Guest artifacts: a Debian cloud kernel and a ~1 MB busybox initramfs.

The cloud kernel (LZ4-compressed) boots ~2 s faster under TCG than the generic one.
It is fetched with `apt-get download` and unpacked with `dpkg-deb -x`: nothing is
installed on the machine. The initramfs turns a 128 MiB diskless TCG guest into
something that behaves like a VM: it answers the ACPI power button (busybox acpid
→ `poweroff -f`), shows a shell on the VGA console (VNC) and on the serial port,
and prints a banner once it is ready for ACPI requests. After the banner, a small loop (`/bin/vf-net`,
run and respawned by init) loads the virtio NIC driver and keeps a busybox `udhcpc` per ethernet
interface, sending the guest's name as its DHCP hostname, and restarts it when the link comes back up
(a hot-plugged NIC, or one moved to another network). A sibling loop (`/bin/vf-disk`) loads the
block and CD-ROM drivers (virtio-blk, virtio-scsi, SATA/AHCI, IDE/PIIX, sd/sr, ISO 9660, vfat) and
says on the serial console when a disk appears, changes size or goes away.

A guest whose kernel command line has `vf.cloud` (the lab's cloud image, lab-cloud.qcow2) is a tiny
cloud image: before its banner, /init loads those drivers, looks for a NoCloud seed (a file system
labelled `cidata` on a CD-ROM or disk), takes its hostname from it and prints what the seed asked for.

The Debian cloud kernel has no AHCI driver (CONFIG_SATA_AHCI is off), so `ahci.ko`/`libahci.ko` are
compiled once from the same version's linux-source against its headers (packages fetched with
`apt-get download` too; needs make and gcc-12).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import shlex
import shutil
import stat
import struct
import subprocess
import tarfile
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
# Modules the guest needs for the ACPI power button to reach acpid (loaded before the banner).
GUEST_MODULES = ("button", "evdev")
# The virtio NIC (PCI transport + driver; their dependencies follow), loaded after the banner.
NIC_MODULES = ("virtio_pci", "virtio_net")
# Disks and CD-ROMs: virtio-blk, virtio-scsi, SATA (AHCI: q35's controller) and IDE (PIIX: pc's), the
# SCSI disk and CD-ROM drivers the last three need, and the file systems of seeds and install media
# (vfat asks for its default code page and iocharset, Joliet for UTF-8). Loaded after the banner by
# vf-disk, or before it by /init in cloud mode (the seed is on one of them).
BLOCK_MODULES = (
    "virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "sr_mod", "ata_piix", "ahci",
    "isofs", "vfat", "nls_cp437", "nls_ascii", "nls_utf8",
)  # fmt: skip
# Modules the cloud kernel lacks that are built from its linux-source: name -> (source dir, objects
# in link order, extra files). CONFIG_SATA_MOBILE_LPM_POLICY is undefined where SATA_AHCI is off.
SOURCE_MODULES = {
    "ahci": ("drivers/ata", ("libahci", "ahci"), ("ahci.h", "libata.h")),
}
SOURCE_CFLAGS = "-DCONFIG_SATA_MOBILE_LPM_POLICY=0"
# In the initramfs, the modules only disks need, unpacked into /lib/modules when first needed.
DISK_MODULES_ARCHIVE = "disk-modules.tar.gz"
# Bump when the initramfs recipe below changes, so `prepare` rebuilds it.
INITRAMFS_RECIPE = 7
BANNER = "virtfleet lab guest {name} ready"
BANNER_RE = re.compile(r"virtfleet lab guest (\S+) ready")
# What the guest prints on its serial console when udhcpc binds a lease (see UDHCPC_SCRIPT).
ADDRESS_RE = re.compile(r"virtfleet lab guest (\S+): (\S+) has ([0-9.]+)/([0-9]+) from DHCP server")
# The text/cloud-config parts of a MIME multipart (one level: what Python's email writes, headers
# folded or not) into dir/NNN (dir/NNN.b64 when base64-encoded), in order.
MIME_AWK = r"""
function header_done(   h, t) {
    h = tolower(hdr)
    if (match(h, /content-type:[ \t]*[^; \t]+/)) {
        t = substr(h, RSTART, RLENGTH); sub(/content-type:[ \t]*/, "", t); ctype = t
    }
    if (h ~ /content-transfer-encoding:[ \t]*base64/) b64 = 1
    if (boundary == "" && match(hdr, /[bB][oO][uU][nN][dD][aA][rR][yY]="[^"]*"/)) {
        boundary = substr(hdr, RSTART + 10, RLENGTH - 11)
    } else if (boundary == "" && match(hdr, /[bB][oO][uU][nN][dD][aA][rR][yY]=[^; \t]+/)) {
        boundary = substr(hdr, RSTART + 9, RLENGTH - 9)
    }
}
BEGIN { state = "head"; hdr = ""; n = 0 }
{ sub(/\r$/, "") }
state == "head" || state == "parthead" {
    if ($0 ~ /^[ \t]/ && hdr != "") { hdr = hdr " " $0; next }
    if ($0 == "") {
        header_done()
        if (state == "head") state = "preamble"
        else {
            state = "body"; out = ""
            if (ctype == "text/cloud-config") out = sprintf("%s/%03d%s", dir, ++n, b64 ? ".b64" : "")
        }
        hdr = ""
        next
    }
    hdr = hdr "\n" $0
    next
}
boundary != "" && ($0 == "--" boundary || $0 == "--" boundary "--") {
    if (out != "") close(out)
    out = ""; ctype = ""; b64 = 0; hdr = ""
    state = ($0 == "--" boundary "--") ? "end" : "parthead"
    next
}
state == "body" && out != "" { print > out }
"""

# What vf-disk prints: `disk vdb appeared (64 MiB)`, `disk sr0 appeared (15 MiB, cdrom)`,
# `disk sr0 appeared (no medium, cdrom)`, `disk vdc appeared (1 MiB, read-only)`, `disk vdb changed
# (128 MiB)` (resized; a CD-ROM's new medium shows once something opens the drive), `disk vdb removed`.
# Sizes are MiB rounded down (KiB below 1 MiB).
DISK_RE = re.compile(r"virtfleet lab guest (\S+): disk (\S+) (appeared|changed|removed)(?: \(([^)]*)\))?")
# What /init prints in cloud mode (vf.cloud on the command line), once, before the banner.
CLOUD_RE = re.compile(
    r"virtfleet lab cloud-init: (?:instance-id=(?P<instance_id>\S*) hostname=(?P<hostname>\S*) user=(?P<user>\S*) "
    r"password=(?P<password>yes|no) ssh-keys=(?P<ssh_keys>[0-9]+) network-config=(?P<network_config>yes|no)"
    r"|(?P<none>no NoCloud seed found))"
)
CLOUD_NO_SEED = "virtfleet lab cloud-init: no NoCloud seed found"


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
    cloud: str = ""  # the same disk in cloud mode (NoCloud seed): lab-cloud.qcow2


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
    if media is None:
        return images
    return replace(images, iso=media.iso, disk=media.disk, qcow2=media.qcow2, cloud=media.cloud)


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
    wanted_names = list(dict.fromkeys((*GUEST_MODULES, *NIC_MODULES, *BLOCK_MODULES)))
    if not force and kernel_info.is_file() and (d / "vmlinuz").is_file():
        info = json.loads(kernel_info.read_text())
        # The unpacked package is gone once done: another module set means fetching it again.
        if info.get("wanted") == wanted_names and all((modules_dir / f"{m}.ko").is_file() for m in info["modules"]):
            return info["package"], info["release"]
    package = resolve_kernel_package()
    with tempfile.TemporaryDirectory(dir=d, prefix=".kernel-") as tmp:
        deb = _download(package, Path(tmp))
        root = Path(tmp) / "root"
        _run(["dpkg-deb", "-x", str(deb), str(root)], what="dpkg-deb -x")
        vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise ImageError(f"{deb.name} contains no /boot/vmlinuz-*")
        release = vmlinuz[0].name.removeprefix("vmlinuz-")
        kmod_root = root / "lib" / "modules" / release
        index = _module_index(kmod_root)
        builtin = _builtin_modules(kmod_root)
        # What the package lacks (and the kernel has not built in) is compiled from its source.
        lacking = [m for m in wanted_names if m not in index and m not in builtin and m in SOURCE_MODULES]
        block_names = BLOCK_MODULES
        if lacking and (missing := _missing_build_tools()):
            # Not worth failing the whole lab for: everything but those drivers (SATA) still works.
            log.warning(
                "not building %s.ko for the lab kernel (it lacks them): %s missing; apt-get install make "
                "gcc-12 binutils libelf1 and run `python -m lab prepare --force` for SATA in lab guests",
                ", ".join(lacking),
                ", ".join(missing),
            )
            block_names = tuple(m for m in BLOCK_MODULES if m not in lacking)
        elif lacking:
            version = _run(["dpkg-deb", "-f", str(deb), "Version"], what="dpkg-deb -f").strip()
            try:
                index.update(_build_source_modules(lacking, release, version, Path(tmp)))
            except ImageError as exc:  # a download, an unpack or the compiler: the rest of the lab still works
                log.warning("not building %s.ko for the lab kernel: %s", ", ".join(lacking), exc)
                block_names = tuple(m for m in BLOCK_MODULES if m not in lacking)
        boot = _with_dependencies(index, builtin, GUEST_MODULES)
        net = _with_dependencies(index, builtin, NIC_MODULES)
        block = _with_dependencies(index, builtin, block_names)
        wanted = {**boot, **net, **block}
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
    info = {
        "package": package,
        "release": release,
        "wanted": wanted_names,
        "modules": list(wanted),  # in load order, dependencies first
        "boot_modules": list(boot),  # loaded by /init before the banner
        "net_modules": [m for m in net if m not in boot],  # by vf-net after it
        "block_modules": [m for m in block if m not in boot],  # by vf-disk after it (by /init in cloud mode)
        "built_from_source": sorted(m for m in wanted if m in _SOURCE_OBJECTS),
        "builtin_skipped": sorted(m for m in wanted_names if m in builtin),
    }
    kernel_info.write_text(json.dumps(info, indent=2) + "\n")
    return package, release


def _download(package: str, into: Path) -> Path:
    log.info("downloading %s with apt-get download", package)
    # The _apt sandbox user cannot write into our directory; we are root anyway.
    _run(
        ["apt-get", "download", "-o", "APT::Sandbox::User=root", package],
        cwd=str(into),
        what=f"apt-get download {package}",
        hint="check the package mirror is reachable and run `apt-get update`",
    )
    name = package.split("=")[0]
    debs = list(into.glob(f"{name}_*.deb"))
    if len(debs) != 1:
        raise ImageError(f"apt-get download {package} produced {debs!r}, expected one .deb")
    return debs[0]


def _module_index(kmod_root: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in kmod_root.rglob("*.ko*"):
        if path.name.endswith((".ko", ".ko.xz")):
            index[path.name.split(".ko")[0].replace("-", "_")] = path
    return index


def _builtin_modules(kmod_root: Path) -> set[str]:
    """Modules compiled into the kernel image (modules.builtin): nothing to load for those."""
    try:
        lines = (kmod_root / "modules.builtin").read_text().split()
    except OSError:
        return set()
    return {line.rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_") for line in lines}


# Every object a SOURCE_MODULES entry builds is a module of its own (ahci needs libahci).
_SOURCE_OBJECTS = {obj for _, objects, _ in SOURCE_MODULES.values() for obj in objects}


def _missing_build_tools() -> list[str]:
    """What building SOURCE_MODULES needs and this machine lacks (kbuild's objtool links libelf)."""
    missing = [prog for prog in ("make", "gcc-12", "strip", "xz") if shutil.which(prog) is None]
    if not any(Path(d, "libelf.so.1").exists() for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")):
        missing.append("libelf1")
    return missing


def _build_source_modules(names: list[str], release: str, version: str, tmp: Path) -> dict[str, Path]:
    """Compile `names` (SOURCE_MODULES) out of tree against the kernel's own headers.

    The headers (with the Module.symvers of that very build: symbol versions match) and the kbuild
    tools come from the linux-headers-<release> package and its dependencies, the C files from
    linux-source-<major.minor> of the same version; all fetched with `apt-get download`, unpacked in
    `tmp`, nothing installed. A module built for another kernel build (say the generic one's ahci.ko)
    would not load: the cloud kernel's structures differ, so do its symbol versions.
    """
    headers = f"linux-headers-{release}"
    deps = _run(["apt-cache", "depends", f"{headers}={version}"], what=f"apt-cache depends {headers}")
    packages = [headers, *re.findall(r"Depends: (linux-(?:headers-\S+-common|kbuild-\S+))", deps)]
    source = "linux-source-" + ".".join(release.split(".")[:2])
    hdr = tmp / "headers"
    for package in packages:
        _run(["dpkg-deb", "-x", str(_download(f"{package}={version}", tmp)), str(hdr)], what="dpkg-deb -x")
    build_dir = hdr / "usr" / "src" / headers
    makefile = build_dir / "Makefile"
    # Its Makefile includes the common headers by their installed path: point it at ours.
    makefile.write_text(makefile.read_text().replace("/usr/src/", f"{hdr}/usr/src/"))
    src_deb = _download(f"{source}={version}", tmp)
    members = []
    for name in names:
        subdir, objects, extra = SOURCE_MODULES[name]
        members += [f"{source}/{subdir}/{f}" for f in (*[f"{o}.c" for o in objects], *extra)]
    work = tmp / "src"
    work.mkdir()
    # The source tarball is ~140 MB of xz: stream it out of the .deb, keep only the files needed.
    extract = (
        f"dpkg-deb --fsys-tarfile {shlex.quote(str(src_deb))} | tar -xO ./usr/src/{source}.tar.xz"
        f" | tar -xJ -C {shlex.quote(str(work))} {' '.join(shlex.quote(m) for m in members)}"
    )
    _run(["bash", "-o", "pipefail", "-ec", extract], what=f"unpacking {source}")
    built: dict[str, Path] = {}
    for name in names:
        subdir, objects, _ = SOURCE_MODULES[name]
        mdir = work / source / subdir
        (mdir / "Kbuild").write_text(f"obj-m := {' '.join(f'{o}.o' for o in objects)}\nccflags-y := {SOURCE_CFLAGS}\n")
        log.info("compiling %s against %s", ", ".join(f"{o}.ko" for o in objects), headers)
        _run(["make", "-C", str(build_dir), f"M={mdir}", "-j2", "modules"], what=f"building {name}.ko")
        for obj in objects:
            ko = mdir / f"{obj}.ko"
            _run(["strip", "--strip-debug", str(ko)], what=f"strip {ko.name}")
            built[obj] = ko
    return built


def _with_dependencies(index: dict[str, Path], builtin: set[str], names: tuple[str, ...]) -> dict[str, Path]:
    """Modules `names` plus everything they depend on, in load order (deps first); modules built
    into the kernel are left out.

    The unpacked package has no modules.dep (depmod runs at install time), so the
    `depends=` field of each module's .modinfo section is read directly.
    """
    ordered: dict[str, Path] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key in ordered:
            return
        if key in chain:
            raise ImageError(f"circular module dependency: {' -> '.join((*chain, key))}")
        if key not in index:
            if key in builtin:
                return
            raise ImageError(f"kernel module {name} is neither in the kernel package nor built in")
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
# The domain XML puts the guest's name into SMBIOS (system product). QEMU's own default product
# ("Standard PC (Q35 + ICH9, 2009)", for a domain without one) is no host name.
name=
read -r name 2>/dev/null </sys/class/dmi/id/product_name
case "$name" in ""|*[!A-Za-z0-9._-]*) name=virtfleet-guest ;; esac
hostname "$name"
# acpid maps the ACPI power button to /etc/acpi/PWRF/00000080 (poweroff -f).
acpid -f -l /var/log/acpid.log &
acpid=$!
# Cloud mode: the disk drivers now, then the NoCloud seed names the guest (before the banner).
read -r cmdline </proc/cmdline
case " $cmdline " in *" vf.cloud "*)
    {unpack}
    for m in {blockmods}; do
        [ -d /sys/module/$m ] || insmod /lib/modules/$m.ko
    done
    /bin/vf-cloud
    read -r name </proc/sys/kernel/hostname
    ;;
esac
# Wait until acpid holds the input devices open: the banner promises that an ACPI
# shutdown sent from now on is not lost.
i=0
while [ $i -lt 100 ] && ! ls -l /proc/$acpid/fd 2>/dev/null | grep -q /dev/input/event; do
    sleep 0.02; i=$((i+1))
done
banner="{banner}"
echo "$banner" >/dev/ttyS0
echo "$banner" >/dev/tty1
exec /sbin/init
"""

# /init runs this in cloud mode, the disk drivers loaded: find the NoCloud seed (a file system
# labelled cidata, any case, ISO 9660 or vfat, on a CD-ROM or disk: devices show up while their
# controllers probe, so up to 10 s), copy its files to /run/vf-cloud/seed, set the hostname and
# print one line on the serial console and the screen. The labels are read from the superblocks
# with dd (busybox has no blkid here; findfs matches case-sensitively); each device once.
CLOUD_INIT = r"""#!/bin/sh
say() {
    echo "virtfleet lab cloud-init: $1" >/dev/ttyS0
    echo "virtfleet lab cloud-init: $1" >/dev/tty1
    echo "$1" >/run/vf-cloud/result
}
# Sets $fstype (iso9660, vfat or nothing) and $label of block device $1.
probe() {
    fstype=; label=
    if [ "$(dd if=/dev/$1 bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ]; then
        fstype=iso9660; label=$(dd if=/dev/$1 bs=1 skip=32808 count=32 2>/dev/null)
    else
        case "$(dd if=/dev/$1 bs=1 skip=54 count=5 2>/dev/null)" in
        FAT12|FAT16) fstype=vfat; label=$(dd if=/dev/$1 bs=1 skip=43 count=11 2>/dev/null) ;;
        *) [ "$(dd if=/dev/$1 bs=1 skip=82 count=5 2>/dev/null)" = FAT32 ] \
            && fstype=vfat && label=$(dd if=/dev/$1 bs=1 skip=71 count=11 2>/dev/null) ;;
        esac
    fi
    label=${label%"${label##*[! ]}"}
}
mkdir -p /run/vf-cloud/seed /run/vf-cloud/probed /mnt/cidata
read -r up _ </proc/uptime
deadline=$((${up%.*} + 10))
seed=
while [ -z "$seed" ]; do
    for dir in /sys/class/block/*; do
        dev=${dir##*/}
        case "$dev" in vd*|sd*|sr*|hd*|xvd*|nvme*) ;; *) continue ;; esac
        [ -e /run/vf-cloud/probed/$dev ] && continue
        size=0; read -r size <"$dir/size"
        [ "$size" != 0 ] || continue  # an empty CD-ROM drive, or one still probing
        : >/run/vf-cloud/probed/$dev
        probe "$dev"
        case "$label" in [cC][iI][dD][aA][tT][aA]) [ -n "$fstype" ] && seed=$dev && break ;; esac
    done
    [ -n "$seed" ] && break
    read -r up _ </proc/uptime
    [ "${up%.*}" -lt "$deadline" ] || break
    sleep 0.2
done
if [ -z "$seed" ]; then
    say "no NoCloud seed found"
    exit 0
fi
if ! mount -t "$fstype" -o ro "/dev/$seed" /mnt/cidata; then
    say "no NoCloud seed found"
    exit 0
fi
for f in meta-data user-data vendor-data network-config; do
    [ -f /mnt/cidata/$f ] && cp /mnt/cidata/$f /run/vf-cloud/seed/$f
done
umount /mnt/cidata
echo "$seed $fstype" >/run/vf-cloud/device
vf-nocloud /run/vf-cloud/seed >/run/vf-cloud/parsed
iid=; lhost=; uhost=; fqdn=; user=; password=; keys=
while IFS='=' read -r k v; do
    case "$k" in
    instance_id) iid=$v ;; local_hostname) lhost=$v ;; hostname) uhost=$v ;; fqdn) fqdn=$v ;;
    user) user=$v ;; password) password=$v ;; ssh_keys) keys=$v ;;
    esac
done </run/vf-cloud/parsed
# As cloud-init: user-data's hostname, else its fqdn, else meta-data's local-hostname; the short name.
h=${uhost:-${fqdn:-$lhost}}
h=${h%%.*}
case "$h" in ""|*[!A-Za-z0-9_-]*) ;; *) hostname "$h"; echo "$h" >/etc/hostname ;; esac
read -r h </proc/sys/kernel/hostname
network=no
[ -s /run/vf-cloud/seed/network-config ] && network=yes
say "instance-id=${iid:-none} hostname=$h user=${user:-default} password=${password:-no} ssh-keys=${keys:-0} network-config=$network"
"""

# `vf-nocloud DIR`: what the NoCloud seed copied to DIR says, as key=value lines (see NOCLOUD_AWK).
# A MIME multipart user-data (Virtfleet writes one when the user's own user-data is a script or other
# non-#cloud-config, with a #cloud-config part beside it) is read as its text/cloud-config parts, in
# order, base64 ones decoded. $VF_ETC (default /etc) holds the awk programs, $VF_WORK (default a
# fresh dir under /run/vf-cloud) is scratch space: the host's tests run it with busybox too.
NOCLOUD_READ = r"""#!/bin/sh
seed=$1
etc=${VF_ETC:-/etc}
work=${VF_WORK:-/run/vf-cloud/work}
mkdir -p "$work/parts"
: >>"$seed/meta-data"
: >>"$seed/user-data"
userdata=$seed/user-data
first=; read -r first <"$userdata"
case "$first" in "#cloud-config"*) ;; *)
    if grep -qi '^content-type: *multipart/' "$userdata"; then
        awk -v dir="$work/parts" -f "$etc/vf-mime.awk" "$userdata"
        echo "#cloud-config" >"$work/cloud-config"
        for part in "$work"/parts/*; do
            case "$part" in
            *.b64) base64 -d "$part" >>"$work/cloud-config" ;;
            */\*) continue ;;
            *) cat "$part" >>"$work/cloud-config" ;;
            esac
            echo >>"$work/cloud-config"
        done
        userdata=$work/cloud-config
    fi
    ;;
esac
awk -f "$etc/vf-nocloud.awk" "$seed/meta-data" "$userdata"
"""

# The seed's meta-data and user-data (the two file arguments, in that order) to `key=value` lines:
# instance_id, local_hostname (meta-data), hostname, fqdn, user, password (yes|no), ssh_keys (from
# user-data when it is #cloud-config; vf-cloud gives it the cloud-config parts of a MIME multipart,
# one after the other: a users list is read as the parts' lists appended). Block-style YAML as
# cloud-init reads it, within reason: quoted or plain scalars, comments, any indentation (sequences at
# their key's indentation too), flow lists [a, b] and simple flow mappings {name: x}; a one-line JSON
# meta-data too. Not a YAML parser: anchors, multi-line keys and the like are not understood.
#   user: the first named entry of users (cloud-init keeps `default` first: a named user after it is
#   the one given), or `default`; when that is the default user (or there is no users list),
#   top-level user (a name or a mapping with name) renames it; `none` for an empty users list. password: yes if that user has passwd / hashed_passwd / plain_text_passwd, or there is
#   a top-level password, or a chpasswd list / users. ssh_keys: that user's ssh_authorized_keys
#   entries, or (none there) the top-level ones.
NOCLOUD_AWK = r"""
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
function unquote(s) {
    s = trim(s)
    if (length(s) >= 2 && substr(s, 1, 1) == "\"" && substr(s, length(s), 1) == "\"") {
        s = substr(s, 2, length(s) - 2); gsub(/\\"/, "\"", s); return s
    }
    if (length(s) >= 2 && substr(s, 1, 1) == "'" && substr(s, length(s), 1) == "'") {
        s = substr(s, 2, length(s) - 2); gsub(/''/, "'", s); return s
    }
    return s
}
# The line without its comment: a # at the start or after a blank, outside quotes.
function uncomment(s,   i, c, q, prev) {
    q = ""; prev = " "
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (q != "") { if (c == q) q = "" }
        else if ((c == "\"" || c == "'") && prev ~ /[ \t:,\[{-]/) q = c
        else if (c == "#" && prev ~ /[ \t]/) return substr(s, 1, i - 1)
        prev = c
    }
    return s
}
# Splits `key: value` into K and V (unquoted); 0 when s is no mapping entry.
function kv(s,   p, q, rest) {
    K = ""; V = ""
    q = substr(s, 1, 1)
    if (q == "\"" || q == "'") {
        p = index(substr(s, 2), q)
        if (p == 0) return 0
        rest = substr(s, p + 2)
        if (rest !~ /^[ \t]*:/) return 0
        K = substr(s, 2, p - 1); sub(/^[ \t]*:/, "", rest); V = unquote(rest); return 1
    }
    if (!match(s, /:([ \t]|$)/)) return 0
    K = trim(substr(s, 1, RSTART - 1)); V = unquote(substr(s, RSTART + 1))
    return K != ""
}
# The entries of a flow sequence "[a, b]" (or flow mapping "{k: v, ...}") into F[1..n]; returns n.
function flow(s,   n, i, c, depth, q, cur) {
    s = trim(s); s = substr(s, 2, length(s) - 2)
    n = 0; depth = 0; q = ""; cur = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (q != "") { if (c == q) q = "" }
        else if (c == "\"" || c == "'") q = c
        else if (c == "[" || c == "{") depth++
        else if (c == "]" || c == "}") depth--
        else if (c == "," && depth == 0) { if (trim(cur) != "") F[++n] = trim(cur); cur = ""; continue }
        cur = cur c
    }
    if (trim(cur) != "") F[++n] = trim(cur)
    return n
}
function is_flow(s, open) { return substr(s, 1, 1) == open }
# Key K (value V) of user entry u: "U" is top-level user, 1.. the users list.
function user_key(u) {
    ukey = K
    if (K == "name") uname[u] = V
    else if ((K == "passwd" || K == "hashed_passwd" || K == "plain_text_passwd") && V != "") upw[u] = 1
    else if (K == "ssh_authorized_keys" && is_flow(V, "[")) ukeys[u] += flow(V)
}
# A flow mapping "{name: x, ...}" as the entry of user u.
function user_flow(u, s,   n, i) {
    n = flow(s)
    for (i = 1; i <= n; i++) FE[i] = F[i]
    for (i = 1; i <= n; i++) if (kv(FE[i])) user_key(u)
}
# A "- entry" of users: a name, "default", a flow mapping or the first key of a mapping.
function user_entry(s) {
    nusers++
    s = trim(s)
    if (s == "") return
    if (is_flow(s, "{")) { user_flow(nusers, s); return }
    if (kv(s)) { user_key(nusers); return }
    uname[nusers] = unquote(s)
}
{ sub(/\r$/, "") }
FNR == 1 {
    file = (FILENAME == ARGV[1]) ? "meta-data" : "user-data"
    top = ""
    if (file == "user-data") cloud = ($0 ~ /^#cloud-config([ \t]|$)/)
}
file == "user-data" && !cloud { next }
{
    line = uncomment($0)
    if (line ~ /^[ \t]*$/ || line ~ /^(---|\.\.\.)([ \t]|$)/) next
    match(line, /^ */); ind = RLENGTH
    text = trim(substr(line, ind + 1))
    item = (text == "-" || text ~ /^-[ \t]/)
}
file == "meta-data" {
    if (ind == 0 && is_flow(text, "{")) {
        n = flow(text)
        for (i = 1; i <= n; i++) if (kv(F[i])) meta[K] = V
    } else if (ind == 0 && kv(text)) meta[K] = V
    next
}
file != "user-data" { next }
ind == 0 && !item {
    top = ""
    if (!kv(text)) next
    top = K; v = V
    if (K == "hostname") hostname = v
    else if (K == "fqdn") fqdn = v
    else if (K == "password" && v != "") toppw = 1
    else if (K == "user") {
        if (is_flow(v, "{")) user_flow("U", v)
        else if (v != "") uname["U"] = v
        ukey = ""; kind = -1
    } else if (K == "users") {
        users = 1; uind = -1
        if (is_flow(v, "[")) { n = flow(v); for (i = 1; i <= n; i++) g[i] = F[i]; for (i = 1; i <= n; i++) user_entry(g[i]) }
        else if (v != "") { n = split(v, g, ","); for (i = 1; i <= n; i++) user_entry(g[i]) }
    } else if (K == "ssh_authorized_keys") { if (is_flow(v, "[")) topkeys += flow(v); lind = -1 }
    else if (K == "chpasswd") { if (v ~ /(list|users)[ \t]*:/) chpw = 1 }
    next
}
top == "ssh_authorized_keys" {
    if (item && (lind < 0 || ind == lind)) { lind = ind; topkeys++ }
    next
}
top == "chpasswd" {
    if (kv(text) && (K == "list" || K == "users")) chpw = 1
    next
}
top == "user" {
    if (kind < 0) kind = ind
    if (ind == kind && !item) { if (kv(text)) user_key("U"); lind = -1 }
    else if (ukey == "ssh_authorized_keys" && item && (lind < 0 || ind == lind)) { lind = ind; ukeys["U"]++ }
    next
}
top == "users" {
    if (item && (uind < 0 || ind == uind)) {
        uind = ind
        rest = substr(text, 2); match(rest, /^[ \t]*/); kind = ind + 1 + RLENGTH
        ukey = ""; lind = -1
        user_entry(rest)
        if (trim(rest) == "") kind = -1
        next
    }
    if (nusers == 0) next
    if (kind < 0) kind = ind
    if (ind == kind && !item) { if (kv(text)) user_key(nusers); lind = -1 }
    else if (ukey == "ssh_authorized_keys" && item && ind >= kind && (lind < 0 || ind == lind)) {
        lind = ind; ukeys[nusers]++
    }
    next
}
END {
    print "instance_id=" meta["instance-id"]
    print "local_hostname=" meta["local-hostname"]
    if (!cloud) { print "user=default"; print "password=no"; print "ssh_keys=0"; exit }
    print "hostname=" hostname
    print "fqdn=" fqdn
    u = "default"; who = "U"
    if (users) {
        if (nusers == 0) u = "none"
        else for (i = 1; i <= nusers; i++) if (uname[i] != "" && uname[i] != "default") { u = uname[i]; who = i; break }
    }
    if (u == "default" && uname["U"] != "") u = uname["U"]
    print "user=" u
    print "password=" ((upw[who] || toppw || chpw) ? "yes" : "no")
    keys = ukeys[who] > 0 ? ukeys[who] : topkeys
    print "ssh_keys=" (keys + 0)
}
"""

# Unpacks the disk-only modules (/init in cloud mode, else vf-disk after the banner); the archive goes.
UNPACK_DISK_MODULES = "[ ! -e {archive} ] || {{ tar -xzf {archive} -C /lib/modules && rm -f {archive}; }}"

# Run (and respawned) by init after the banner: nothing here delays the banner or acpid.
NET_LOOP = r"""#!/bin/sh
# The lab guest's network: one busybox udhcpc per ethernet interface, sending the guest's name as
# its DHCP hostname. Every 3 s: a new interface (hot-plugged) gets a client; an interface whose link
# went down and up since the last look (carrier_changes counts every flip: `virsh domif-setlink`)
# gets a fresh client, which asks for a new lease; so does one whose DHCP server's address stopped
# answering ARP from the MAC it had, twice in a row 9 s apart (libvirt moves a NIC to another network
# without a link flip, and there the host answers for its own address from another bridge); an
# interface that went away loses its client.
exec >>/var/log/vf-net.log 2>&1
for m in {netmods}; do
    [ -d /sys/module/$m ] || insmod /lib/modules/$m.ko
done
ip link set lo up
mkdir -p /run/vf-net
name=$(hostname)
# `read -t` on a FIFO nobody writes to sleeps without forking a `sleep`.
[ -p /run/vf-net/tick ] || mkfifo /run/vf-net/tick
exec 3<>/run/vf-net/tick
alive() {
    [ -n "$1" ] && [ -r /proc/$1/stat ] && read -r _ _ st _ </proc/$1/stat && [ "$st" != Z ]
}
stop() {
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}
# Sets $now to the MAC answering ARP for $2 on $1 within 1 s ('' if none). No subshell: under TCG
# every fork counts, this loop is most of an idle guest's CPU time.
arp_mac() {
    now=
    arping -f -c 1 -w 1 -I "$1" "$2" >/run/vf-net/arp 2>/dev/null || return 0
    while read -r line; do
        case "$line" in *"reply from"*"["*"]"*)
            now=${line#*[}
            now=${now%%]*}
            return 0
            ;;
        esac
    done </run/vf-net/arp
}
lost() {
    lease=; server=; mac=; read -r lease server mac 2>/dev/null </run/vf-net/$1.lease
    [ -n "$server" ] || return 1
    arp_mac "$1" "$server"
    if [ -n "$now" ] && [ -z "$mac" ]; then
        echo "$lease $server $now" >/run/vf-net/$1.lease
    fi
    if [ -n "$now" ] && { [ -z "$mac" ] || [ "$now" = "$mac" ]; }; then
        rm -f /run/vf-net/$1.miss
        return 1
    fi
    [ -e /run/vf-net/$1.miss ] || { : >/run/vf-net/$1.miss; return 1; }
}
tick=0
while :; do
    tick=$(((tick + 1) % 3))
    for dir in /sys/class/net/*; do
        i=${dir##*/}
        type=; read -r type 2>/dev/null <"$dir/type"
        [ "$i" != lo ] && [ "$type" = 1 ] || continue
        carrier=0; read -r carrier 2>/dev/null <"$dir/carrier"
        changes=; read -r changes 2>/dev/null <"$dir/carrier_changes"
        pid=; read -r pid 2>/dev/null </run/vf-net/$i.pid
        last=; read -r last 2>/dev/null </run/vf-net/$i.changes
        # A new interface's flips count from the next look on (bringing it up flips it); a running
        # one's from now, so that a flip right after a restart is not missed.
        keep=
        if alive "$pid"; then
            echo "$changes" >/run/vf-net/$i.changes
            if [ -n "$last" ] && [ "$changes" != "$last" ] && [ "$carrier" = 1 ]; then
                echo "$i: link went down and up, asking for a new lease"
            elif [ "$tick" = 0 ] && [ "$carrier" = 1 ] && lost "$i"; then
                echo "$i: DHCP server $server is not on this link any more, asking for a new lease"
            else
                continue
            fi
            stop "$pid"
            keep=$changes
        fi
        rm -f /run/vf-net/$i.miss /run/vf-net/$i.lease
        ip link set "$i" up
        udhcpc -f -i "$i" -s /etc/udhcpc.script -x "hostname:$name" -T 2 -A 3 &
        echo $! >/run/vf-net/$i.pid
        echo "$keep" >/run/vf-net/$i.changes
    done
    for pidfile in /run/vf-net/*.pid; do
        i=${pidfile##*/}; i=${i%.pid}
        [ -e "$pidfile" ] && [ ! -e /sys/class/net/$i ] || continue
        echo "$i: gone"
        read -r pid <"$pidfile"; stop "$pid"
        rm -f "$pidfile" /run/vf-net/$i.changes /run/vf-net/$i.lease /run/vf-net/$i.miss
    done
    read -r -t 3 _ <&3
done
"""

# Run (and respawned) by init after the banner, beside vf-net: the disk drivers, then every 3 s (1 s
# for the first 10 s: controllers probe in the background) a look at /sys/block with shell builtins
# only (no fork per tick: under TCG forks are what an idle guest's CPU goes to), and only when the
# kernel sent a uevent since the last look. A disk seen for the
# first time (at boot or hot-plugged) is announced once, so is a new size (resized, a CD-ROM's new
# medium) and a disk that went away; what was announced is kept in /run/vf-disk (a respawned loop
# does not repeat itself).
DISK_LOOP = r"""#!/bin/sh
exec >>/var/log/vf-disk.log 2>&1
{unpack}
for m in {blockmods}; do
    [ -d /sys/module/$m ] || insmod /lib/modules/$m.ko
done
mkdir -p /run/vf-disk
[ -p /run/vf-disk/tick ] || mkfifo /run/vf-disk/tick
exec 3<>/run/vf-disk/tick
say() {
    host=; read -r host </proc/sys/kernel/hostname
    printf '\nvirtfleet lab guest %s: disk %s\n' "$host" "$1" >/dev/ttyS0
    echo "disk $1"
}
# Sets $what to "64 MiB" / "600 KiB" / "no medium", then ", cdrom" or ", read-only" if so.
describe() {
    if [ "$2" = 0 ]; then what="no medium"
    elif [ "$2" -ge 2048 ]; then what="$(($2 / 2048)) MiB"
    else what="$(($2 / 2)) KiB"
    fi
    case "$1" in
    sr*) what="$what, cdrom" ;;
    *) ro=0; read -r ro <"/sys/block/$1/ro"; [ "$ro" = 1 ] && what="$what, read-only" ;;
    esac
}
n=0; last=
while :; do
    # A disk coming, going or resized is a uevent: while the kernel's uevent counter stands still,
    # a tick costs one read (scanning every disk each time was ~0.4 % of a core under TCG).
    seq=; read -r seq </sys/kernel/uevent_seqnum
    if [ "$seq" != "$last" ]; then
        last=$seq
        for dir in /sys/block/*; do
            d=${dir##*/}
            case "$d" in vd*|sd*|sr*|hd*|xvd*|nvme*) ;; *) continue ;; esac
            size=0; read -r size <"$dir/size"
            old=; read -r old 2>/dev/null </run/vf-disk/$d
            [ "$size" = "$old" ] && continue
            describe "$d" "$size"
            if [ -z "$old" ]; then say "$d appeared ($what)"; else say "$d changed ($what)"; fi
            echo "$size" >/run/vf-disk/$d
        done
        for f in /run/vf-disk/*; do
            d=${f##*/}
            [ "$d" != tick ] && [ -f "$f" ] && [ ! -e /sys/block/$d ] || continue
            say "$d removed"
            rm -f "$f"
        done
    fi
    if [ $n -lt 10 ]; then n=$((n + 1)); read -r -t 1 _ <&3; else read -r -t 3 _ <&3; fi
done
"""

# udhcpc runs this with deconfig | bound | renew | nak | leasefail; the lease is in its environment.
UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    rm -f /run/vf-net/$interface.lease
    ;;
bound|renew)
    if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/$mask "; then
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/$mask" ${broadcast:+broadcast $broadcast} dev "$interface"
    fi
    for gw in $router; do
        ip route replace default via "$gw" dev "$interface"
        break
    done
    echo "$ip/$mask $serverid $(server-mac "$interface" "$serverid")" >/run/vf-net/$interface.lease
    if [ "$1" = bound ]; then
        printf '\nvirtfleet lab guest %s: %s has %s from DHCP server %s\n' "$(hostname)" "$interface" "$ip/$mask" \
            "$serverid" >/dev/ttyS0
    fi
    ;;
esac
exit 0
"""

# The MAC that answers ARP for address $2 on interface $1 (nothing if none does within 1 s).
SERVER_MAC = r"""#!/bin/sh
out=$(arping -f -c 1 -w 1 -I "$1" "$2" 2>/dev/null) || exit 1
case "$out" in
*"reply from"*"["*"]"*) ;;
*) exit 1 ;;
esac
out=${out#*reply from*[}
echo "${out%%]*}"
"""

INITTAB = """\
::sysinit:/bin/true
::respawn:/bin/vf-net
::respawn:/bin/vf-disk
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
        for sub in ("bin", "dev", "proc", "sys", "etc/acpi/PWRF", "lib/modules", "root", "var/log", "mnt"):
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
        # The disk-only modules (~2 MB) travel as one gzip'd tar that vf-disk unpacks after the
        # banner: the kernel inflates the initramfs before /init runs, and inflating them under TCG
        # would delay every guest's banner (packed, they are stored, not inflated, by the outer gzip).
        shared = {*info["boot_modules"], *info["net_modules"]}
        packed = [m for m in info["block_modules"] if m not in shared]
        for name in info["modules"]:  # already in dependency order
            if name in packed:
                continue
            shutil.copyfile(modules_dir / f"{name}.ko", root / "lib" / "modules" / f"{name}.ko")
            if name in info["boot_modules"]:
                insmods.append(f"insmod /lib/modules/{name}.ko")
        _pack_modules(root / "lib" / "modules" / DISK_MODULES_ARCHIVE, modules_dir, packed)
        blockmods = " ".join(info["block_modules"])
        unpack = UNPACK_DISK_MODULES.format(archive=f"/lib/modules/{DISK_MODULES_ARCHIVE}")
        init = INIT.replace("{insmods}", "\n".join(insmods)).replace("{blockmods}", blockmods)
        init = init.replace("{unpack}", unpack)
        _write(root / "init", init.replace("{banner}", BANNER.format(name="$name")), 0o755)
        _write(root / "bin" / "vf-net", NET_LOOP.replace("{netmods}", " ".join(info["net_modules"])), 0o755)
        disk_loop = DISK_LOOP.replace("{blockmods}", blockmods).replace("{unpack}", unpack)
        _write(root / "bin" / "vf-disk", disk_loop, 0o755)
        _write(root / "bin" / "vf-cloud", CLOUD_INIT, 0o755)
        _write(root / "etc" / "vf-nocloud.awk", NOCLOUD_AWK)
        _write(root / "etc" / "vf-mime.awk", MIME_AWK)
        _write(root / "bin" / "vf-nocloud", NOCLOUD_READ, 0o755)
        _write(root / "etc" / "udhcpc.script", UDHCPC_SCRIPT, 0o755)
        _write(root / "bin" / "server-mac", SERVER_MAC, 0o755)
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


def _pack_modules(target: Path, modules_dir: Path, names: list[str]) -> None:
    """`names`.ko as a reproducible .tar.gz (fixed mtimes and owners)."""
    with (
        open(target, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for name in names:
            info = tar.gettarinfo(str(modules_dir / f"{name}.ko"), arcname=f"{name}.ko")
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
            with open(modules_dir / f"{name}.ko", "rb") as f:
                tar.addfile(info, f)


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
