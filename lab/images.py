"""Guest artifacts: a Debian cloud kernel and a ~1 MB busybox initramfs.

The cloud kernel (LZ4-compressed) boots ~2 s faster under TCG than the generic one.
It is fetched with `apt-get download` and unpacked with `dpkg-deb -x`: nothing is
installed on the machine. The initramfs turns a 128 MiB diskless TCG guest into
something that behaves like a VM: it answers the ACPI power button (busybox acpid
→ `poweroff -f`), shows a shell on the VGA console (VNC) and on the serial port,
and prints a banner once it is ready for ACPI requests. After the banner, a small loop (`/bin/vf-net`,
run and respawned by init) loads the virtio NIC driver and keeps a busybox `udhcpc` per ethernet
interface, sending the guest's name as its DHCP hostname, and restarts it when the link comes back up
(a hot-plugged NIC, or one moved to another network).
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
# Modules the guest needs for the ACPI power button to reach acpid (loaded before the banner).
GUEST_MODULES = ("button", "evdev")
# The virtio NIC (PCI transport + driver; their dependencies follow), loaded after the banner.
NIC_MODULES = ("virtio_pci", "virtio_net")
# Bump when the initramfs recipe below changes, so `prepare` rebuilds it.
INITRAMFS_RECIPE = 4
BANNER = "virtfleet lab guest {name} ready"
BANNER_RE = re.compile(r"virtfleet lab guest (\S+) ready")
# What the guest prints on its serial console when udhcpc binds a lease (see UDHCPC_SCRIPT).
ADDRESS_RE = re.compile(r"virtfleet lab guest (\S+): (\S+) has ([0-9.]+)/([0-9]+) from DHCP server")


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
    wanted_names = [*GUEST_MODULES, *NIC_MODULES]
    if not force and kernel_info.is_file() and (d / "vmlinuz").is_file():
        info = json.loads(kernel_info.read_text())
        # The unpacked package is gone once done: another module set means fetching it again.
        if info.get("wanted") == wanted_names and all((modules_dir / f"{m}.ko").is_file() for m in info["modules"]):
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
        boot = _with_dependencies(kmod_root, GUEST_MODULES)
        wanted = _with_dependencies(kmod_root, (*GUEST_MODULES, *NIC_MODULES))
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
        "boot_modules": list(boot),  # loaded by /init before the banner; the others by vf-net
    }
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
        insmods, netmods = [], []
        for name in info["modules"]:  # already in dependency order
            shutil.copyfile(modules_dir / f"{name}.ko", root / "lib" / "modules" / f"{name}.ko")
            if name in info["boot_modules"]:
                insmods.append(f"insmod /lib/modules/{name}.ko")
            else:
                netmods.append(name)
        _write(
            root / "init",
            INIT.replace("{insmods}", "\n".join(insmods)).replace("{banner}", BANNER.format(name="$name")),
            0o755,
        )
        _write(root / "bin" / "vf-net", NET_LOOP.replace("{netmods}", " ".join(netmods)), 0o755)
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
