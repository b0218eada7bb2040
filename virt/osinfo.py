"""OS presets for new VMs, read from osinfo-db: the XML tree virt-install itself decides from.

virt-install (virtinst/osdict.py) asks libosinfo what an OS supports and turns the answers into a
VM's defaults: the machine type, disk bus, NIC model, memory, disk size, vCPUs and firmware. This
module reads the same osinfo-db files (``/usr/share/osinfo``) with the standard library alone
(expat, refusing DTDs and entities as defusedxml would) — no libosinfo, no GObject — and answers
as virt-install would, so the New VM form offers the presets and defaults that
``virt-install --osinfo NAME`` would pick.

libosinfo's rules mirrored here:

- an OS inherits devices and firmware through ``derives-from`` and ``clones`` (not ``upgrades``),
  depth first, nearest first; a device any OS on that line marks ``supported="false"`` is gone;
- resources are the OS's own, per architecture; only a ``<resources inherit="true">`` block takes
  the values it lacks from the same architecture's block of the OSes it derives from;
- ``<os>`` data spread over ``foo.xml`` and ``foo.d/*.xml`` is one OS (strings: the later wins).

And virtinst's, on top: per-architecture resources fall back to ``arch="all"``, a missing
recommended value is twice the minimum, q35 only for an OS with q35 and virtio 1.0 (when it has
virtio at all), BIOS unless the OS has dropped it, EOL when the EOL date has passed or, with no EOL
date, ten years after release (never for a rolling release).

Everything returned is a frozen dataclass; a missing osinfo-db is a VirtError that says to install
it.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn
from xml.parsers import expat

from .errors import VirtError

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/usr/share/osinfo"
ROOT_ENV = "VIRTFLEET_OSINFO_DIR"

# The device ids virtinst asks osinfo about: PCI vendor 1af4 is virtio, each in its legacy and its
# virtio 1.0 id.
VIRTIO_BLOCK = ("http://pcisig.com/pci/1af4/1001", "http://pcisig.com/pci/1af4/1042")
VIRTIO_NET = ("http://pcisig.com/pci/1af4/1000", "http://pcisig.com/pci/1af4/1041")
VIRTIO1_NET = "http://pcisig.com/pci/1af4/1041"  # virtinst's stand-in for "virtio 1.0 as a whole"
VIRTIO_SCSI = ("http://pcisig.com/pci/1af4/1004", "http://pcisig.com/pci/1af4/1048")
VIRTIO_RNG = ("http://pcisig.com/pci/1af4/1005", "http://pcisig.com/pci/1af4/1044")
VIRTIO_BALLOON = ("http://pcisig.com/pci/1af4/1002", "http://pcisig.com/pci/1af4/1045")
VIRTIO_SERIAL = ("http://pcisig.com/pci/1af4/1003", "http://pcisig.com/pci/1af4/1043")
QEMU_XHCI = "http://pcisig.com/pci/1b36/0004"
Q35_CHIPSET = "http://qemu.org/chipset/x86/q35"
# On the i440fx machine, the emulated NICs virtinst tries in this order before settling for e1000.
LEGACY_NICS = ("e1000", "rtl8139", "ne2k_pci", "pcnet")
WINDOWS_FAMILIES = ("win9x", "winnt", "win16")
EOL_AFTER = datetime.timedelta(days=365 * 10)  # no EOL date: EOL this long after release
X86 = ("x86_64", "i686")
# Machines that only have virtio devices: virtinst uses virtio there whatever osinfo says.
VIRTIO_MACHINES = {"aarch64": "virt", "armv7l": "virt", "riscv64": "virt", "s390x": "s390-ccw-virtio",
                   "ppc64": "pseries", "ppc64le": "pseries"}  # fmt: skip
# An x86_64 host runs 32-bit x86 guests too, so their presets belong in its picker.
RUNS_ON = {"x86_64": ("x86_64", "i686", "i586", "i386"), "i686": ("i686", "i586", "i386"),
           "ppc64le": ("ppc64le", "ppc64"), "ppc64": ("ppc64", "ppc64le")}  # fmt: skip
GENERIC_LINUX = re.compile(r"linux\d{4}")  # libosinfo.org's linux2016, linux2018, ...
RESOURCE_KEYS = ("ram", "storage", "n-cpus")
MIB = 2**20


# --- what is returned ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OsPreset:
    """One OS as the New VM form offers it, with the defaults virt-install would give its VM.

    Device choices are for the architecture the preset was made for (x86_64 unless asked): the
    machine virt-install picks (q35 when the OS supports it, else pc/i440fx) and the disk bus and
    NIC model it then uses. Sizes are 0 where osinfo says nothing.
    """

    id: str  # "http://debian.org/debian/11"; "" for virt-install's own "generic" entry
    short_id: str  # "debian11" (the first short-id, virtinst's name for it)
    name: str
    family: str  # linux, winnt, win9x, freebsd, ... ("" unknown)
    distro: str
    vendor: str
    version: str
    release_date: str  # YYYY-MM-DD or ""
    eol_date: str  # YYYY-MM-DD or ""
    eol: bool
    disk_bus: str  # virtio, sata, ide
    nic_model: str  # virtio, e1000e, e1000, rtl8139, ne2k_pci, pcnet
    min_memory_mib: int  # osinfo's bytes rounded up to whole MiB (a minimum must not shrink)
    recommended_memory_mib: int
    min_storage_bytes: int
    recommended_storage_bytes: int
    min_vcpus: int
    recommended_vcpus: int
    # Firmware osinfo says the OS boots with, EFI first when it lists EFI; () when it says nothing.
    # virt-install itself still boots BIOS unless BIOS is unsupported: that is firmware_default.
    firmware: tuple[str, ...]
    # osinfo-db has no Secure Boot data (its schema has none, to this day): True for an x86 OS that
    # can no longer boot BIOS (win11), whose installer is the one that demands UEFI Secure Boot.
    secure_boot: bool
    cloud_init: bool  # osinfo lists a cloud image of this OS made for cloud-init
    virtio_scsi: bool
    usb_tablet: bool  # virtinst adds one for the graphics on x86, arm, riscv and ppc without asking osinfo
    # --- beyond the agreed API: the rest of what virt-install decides from osinfo ---
    short_ids: tuple[str, ...] = ()
    codename: str = ""
    release_status: str = ""  # released (""), prerelease, snapshot, rolling
    arch: str = "x86_64"  # the architecture these defaults are for
    arches: tuple[str, ...] = ()  # architectures osinfo lists install media, trees or images for
    machine: str = "pc"  # q35, pc (i440fx), virt, pseries, s390-ccw-virtio
    firmware_default: str = "bios"  # what virt-install boots: efi only when the OS needs it (or arm)
    tpm: bool = False  # virtinst adds an emulated TPM whenever it boots UEFI
    clock: str = "utc"  # localtime for Windows and Solaris, as virtinst sets the RTC
    usb3: bool = False  # a qemu-xhci controller rather than USB 2 (ich9-ehci1 and companions)
    virtio_rng: bool = False
    virtio_balloon: bool = False
    guest_agent_channel: bool = False  # virtio-serial, so virtinst adds the qemu-guest-agent channel
    derives_from: tuple[str, ...] = ()  # what it inherits from (derives-from, clones): ids, nearest first
    network_models: tuple[str, ...] = field(default=(), repr=False)  # osinfo's NICs for the OS

    def label(self) -> str:
        return f"{self.name} ({self.short_id})" if self.short_id else self.name

    def on_machine(self, machine: str) -> OsPreset:
        """This preset on another x86 machine type than virt-install's pick (``--machine q35`` for
        an old OS, say): the disk bus and NIC virtinst would then use, as IDE does not exist on q35."""
        if self.arch not in X86 or machine == self.machine:
            return self
        q35 = "q35" in machine  # virtinst's test: q35, pc-q35-8.0, ...
        disk = "virtio" if self.disk_bus == "virtio" else "sata" if q35 else "ide"
        if self.nic_model == "virtio":
            nic = "virtio"
        else:
            nic = "e1000e" if q35 else next((m for m in LEGACY_NICS if m in self.network_models), "e1000")
        return replace(self, machine=machine, disk_bus=disk, nic_model=nic)

    @property
    def windows(self) -> bool:
        return self.family in WINDOWS_FAMILIES

    @property
    def generic_linux(self) -> bool:
        """One of osinfo's "Generic Linux YYYY" entries, for a distro it does not know."""
        return bool(GENERIC_LINUX.match(self.short_id))


# --- what is read ---------------------------------------------------------------------------------------
@dataclass
class _Resources:
    kind: str  # minimum, recommended
    arch: str
    inherit: bool
    values: dict[str, int]


@dataclass
class _Os:
    """One <os> as the files say it, before any inheritance."""

    id: str
    short_ids: list[str] = field(default_factory=list)
    text: dict[str, str] = field(default_factory=dict)  # name, vendor, version, family, distro, ...
    derives_from: list[str] = field(default_factory=list)
    clones: list[str] = field(default_factory=list)
    upgrades: list[str] = field(default_factory=list)
    devices: list[tuple[str, bool]] = field(default_factory=list)  # (device id, supported)
    firmware: list[tuple[str, str, bool]] = field(default_factory=list)  # (arch, type, supported)
    resources: list[_Resources] = field(default_factory=list)
    arches: set[str] = field(default_factory=set)
    cloud_init: bool = False


@dataclass(frozen=True)
class _Device:
    name: str
    klass: str


_TEXT = ("name", "vendor", "version", "family", "distro", "codename", "release-date", "eol-date",
         "release-status")  # fmt: skip
_LANG = "xml:lang"


def _int(text: str | None) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        return 0  # libosinfo's strtoll reads garbage as 0, which virtinst then treats as unknown


def _read_resources(el: ET.Element) -> Iterator[_Resources]:
    arch = el.get("arch", "all")
    inherit = el.get("inherit") == "true"
    for kind in ("minimum", "recommended"):
        values = {}
        for block in el.findall(kind):
            for item in block:
                if item.tag in RESOURCE_KEYS and (item.text or "").strip():
                    values[item.tag] = _int(item.text)
        # an empty block means nothing, unless it asks to inherit everything
        if values or inherit:
            yield _Resources(kind, arch, inherit, values)


def _merge_os(rec: _Os, el: ET.Element) -> None:
    """Add one <os> element's data to the OS it names (its .d fragments add to the same one)."""
    for tag in _TEXT:
        value = _direct_text(el, tag)
        if value:
            rec.text[tag] = value
    rec.short_ids += [(s.text or "").strip() for s in el.findall("short-id") if (s.text or "").strip()]
    for tag, into in (("derives-from", rec.derives_from), ("clones", rec.clones), ("upgrades", rec.upgrades)):
        into += [r.get("id", "") for r in el.findall(tag) if r.get("id")]
    for dev in el.findall("devices/device"):
        if dev.get("id"):
            rec.devices.append((dev.get("id", ""), dev.get("supported") != "false"))
    for fw in el.findall("firmware"):
        supported = fw.get("supported")
        rec.firmware.append((fw.get("arch", ""), fw.get("type", ""), supported is None or supported == "true"))
    for res in el.findall("resources"):
        rec.resources += _read_resources(res)
    for tag in ("media", "tree", "image"):
        rec.arches.update(m.get("arch", "") for m in el.findall(tag) if m.get("arch"))
    rec.cloud_init = rec.cloud_init or any(i.get("cloud-init") == "true" for i in el.findall("image"))


def _direct_text(el: ET.Element, tag: str) -> str:
    """A direct child's untranslated text (not one of a <media>'s or <variant>'s own names)."""
    first = None
    for child in el.findall(tag):
        if first is None:
            first = child
        if _LANG not in child.attrib:
            return (child.text or "").strip()
    return (first.text or "").strip() if first is not None else ""


def _entity_files(directory: Path) -> list[Path]:
    """The XML files under a directory in libosinfo's order: each entity's foo.xml, then its
    foo.d/*.xml fragments (sorted), so a fragment adds to and overrides the main file."""

    def key(path: Path) -> tuple[str, int, str]:
        if path.parent.name.endswith(".d"):
            return (str(path.parent)[:-2], 1, path.name)
        return (str(path)[:-4], 0, "")

    return sorted(directory.rglob("*.xml"), key=key)


def _refuse(*_args: object) -> NoReturn:
    raise ValueError("DTDs and entity declarations are not allowed in osinfo-db files")


def _parse(path: Path) -> ET.Element | None:
    """One file's tree, parsed by expat straight into ElementTree's C tree builder.

    About 2.5 times faster than defusedxml.ElementTree (whose parser is the pure-Python one), with
    what defusedxml guards against refused the same way: no DTD, no entity declarations, no
    external entities. Names are kept as written, so xml:lang stays "xml:lang".
    """
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    try:
        parser.Parse(path.read_bytes(), True)
        return builder.close()
    except (expat.ExpatError, ValueError, OSError) as exc:
        # libosinfo skips a broken file with a warning too; one bad file must not hide the rest
        log.warning("osinfo: skipping %s: %s", path, exc)
        return None


# --- deciding as virtinst does -----------------------------------------------------------------------------
def _version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Sorts newest first: numbers descending, and a word ("testing", "rolling", "unknown") before
    any number, as it names the newest of a line."""
    parts = re.split(r"(\d+)", version.lower())
    return tuple((1, -int(p), "") if p.isdigit() else (0, 0, p) for p in parts if p)


def _pick(resources: dict[str, dict[str, int]], key: str, arch: str) -> int:
    """virtinst's lookup: the architecture's own value, else the arch="all" one; 0 = unknown."""
    for candidate in (arch, "all"):
        value = resources.get(candidate, {}).get(key)
        if value is not None:
            # virtinst stops at any value found, and counts only positive ones
            return value if value > 0 else 0
    return 0


@dataclass(frozen=True)
class _Decided:
    """What the device rules decided (kept apart to keep each step small)."""

    machine: str
    disk_bus: str
    nic_model: str
    virtio_scsi: bool
    guest_agent_channel: bool
    usb3: bool
    usb_tablet: bool


def _decide_devices(arch: str, devices: set[str], nics: tuple[str, ...], related_rhel6: bool) -> _Decided:
    """Machine, disk bus, NIC and the rest, as virtinst's Guest and device defaults choose them."""

    def has(ids: Iterable[str]) -> bool:
        return any(i in devices for i in ids)

    if arch in VIRTIO_MACHINES:
        # virt, pseries and s390x have only virtio; virtinst does not ask the OS there
        return _Decided(VIRTIO_MACHINES[arch], "virtio", "virtio", True, True, arch != "s390x", arch != "s390x")
    virtio_net = has(VIRTIO_NET)
    # q35 only with virtio 1.0 when the OS has virtio at all: legacy-only virtio drivers break there
    q35 = has([Q35_CHIPSET]) and (not virtio_net or VIRTIO1_NET in devices)
    disk = "virtio" if has(VIRTIO_BLOCK) else "sata" if q35 else "ide"
    if virtio_net:
        nic = "virtio"
    elif q35:
        nic = "e1000e"
    else:
        nic = next((m for m in LEGACY_NICS if m in nics), "e1000")
    # virtinst's own patch for RHEL/CentOS entries whose osinfo data lacked virtio-serial until 2018
    serial = has(VIRTIO_SERIAL) or related_rhel6
    x86 = arch in X86
    return _Decided("q35" if q35 else "pc", disk, nic, has(VIRTIO_SCSI), serial, x86 and QEMU_XHCI in devices, x86)


def _firmware(short_id: str, arch: str, complete: dict[tuple[str, str], bool]) -> tuple[tuple[str, ...], str]:
    """(the firmware osinfo allows, EFI first; what virt-install boots) for one architecture."""
    known = {kind for (fw_arch, kind) in complete if fw_arch == arch}
    efi = complete.get((arch, "efi"), False)
    bios = complete.get((arch, "bios"), True)  # virtinst: BIOS works unless osinfo says otherwise
    allowed = tuple(kind for kind, ok in (("efi", efi), ("bios", bios)) if ok) if known else ()
    if arch in X86:
        # BIOS is faster and keeps QEMU's internal snapshots working, so virt-install only boots
        # UEFI when the OS dropped BIOS; win11 it hard-codes (osinfo-db long lacked an entry).
        default = "efi" if (efi and not bios) or short_id == "win11" else "bios"
    else:
        default = "efi" if arch in ("aarch64", "armv7l") else "bios"
    return allowed, default


def _is_eol(rec: _Os, today: datetime.datetime) -> bool:
    eol = _date(rec.text.get("eol-date", ""))
    if eol is not None:
        return today > eol
    if rec.text.get("release-status") == "rolling":
        return False
    released = _date(rec.text.get("release-date", ""))
    return released is not None and today > released + EOL_AFTER


def _date(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return None


# --- the database ----------------------------------------------------------------------------------------
class OsDatabase:
    """osinfo-db read from one directory, parsed once on first use; presets made on demand.

    ``today`` fixes the date EOL is judged on (tests); otherwise it is the day each is asked.
    """

    def __init__(self, root: str | Path = DEFAULT_ROOT, *, today: datetime.date | None = None) -> None:
        self.root = Path(root)
        if not (self.root / "os").is_dir():
            raise VirtError(
                f"osinfo-db not found at {self.root}",
                hint=f"install the osinfo-db package (apt install osinfo-db), or point {ROOT_ENV} at its directory.",
            )
        self._today = today
        self._lock = threading.Lock()
        self._oses: dict[str, _Os] | None = None
        self._devices: dict[str, _Device] = {}
        self._by_short_id: dict[str, str] = {}
        self._lineages: dict[str, tuple[str, ...]] = {}
        self._presets: dict[tuple[str, str, datetime.date], OsPreset] = {}

    # --- loading ---
    def _load(self) -> dict[str, _Os]:
        if self._oses is not None:
            return self._oses
        with self._lock:
            if self._oses is None:
                oses: dict[str, _Os] = {}
                for directory in ("device", "os"):
                    for path in _entity_files(self.root / directory) if (self.root / directory).is_dir() else ():
                        self._read_file(path, oses)
                for rec in oses.values():
                    rec.short_ids = list(dict.fromkeys(rec.short_ids))  # fragments repeat them
                    for sid in rec.short_ids:
                        self._by_short_id.setdefault(sid, rec.id)
                self._oses = oses
        return self._oses

    def _read_file(self, path: Path, oses: dict[str, _Os]) -> None:
        root = _parse(path)
        if root is None or root.tag != "libosinfo":
            return
        for el in root:
            ident = el.get("id", "")
            if not ident:
                continue
            if el.tag == "os":
                _merge_os(oses.setdefault(ident, _Os(ident)), el)
            elif el.tag == "device":
                old = self._devices.get(ident, _Device("", ""))
                name, klass = _direct_text(el, "name"), _direct_text(el, "class")
                self._devices[ident] = _Device(name or old.name, klass or old.klass)

    def _related(self, ident: str, relations: tuple[str, ...]) -> tuple[str, ...]:
        """The OS and those it derives from / clones (/ upgrades), depth first as libosinfo walks
        them, each once (a second visit could add nothing)."""
        oses = self._load()
        seen: dict[str, None] = {}

        def walk(current: str) -> None:
            rec = oses.get(current)
            if current in seen or rec is None:
                return  # a loop in the data, or a reference to an OS no file defines
            seen[current] = None
            for relation in relations:
                for target in getattr(rec, relation):
                    walk(target)

        walk(ident)
        return tuple(seen)

    def _lineage(self, ident: str) -> tuple[str, ...]:
        if ident not in self._lineages:
            self._lineages[ident] = self._related(ident, ("derives_from", "clones"))
        return self._lineages[ident]

    # --- inheritance ---
    def _all_devices(self, lineage: tuple[str, ...]) -> set[str]:
        oses = self._load()
        links = [link for ident in lineage for link in oses[ident].devices]
        # libosinfo drops a device that any OS on the line marks unsupported, even if a nearer one
        # lists it as supported again
        return {dev for dev, _ in links} - {dev for dev, ok in links if not ok}

    def _resources(self, lineage: tuple[str, ...], kind: str) -> dict[str, dict[str, int]]:
        oses = self._load()
        own = [
            _Resources(r.kind, r.arch, r.inherit, dict(r.values)) for r in oses[lineage[0]].resources if r.kind == kind
        ]
        for ancestor in lineage[1:]:
            theirs = [r for r in oses[ancestor].resources if r.kind == kind]
            for mine in own:
                if not mine.inherit:
                    continue
                for other in theirs:
                    if other.arch == mine.arch:
                        for key, value in other.values.items():
                            mine.values.setdefault(key, value)
        return {r.arch: r.values for r in own}  # several blocks for one arch: the last one counts

    def _complete_firmware(self, lineage: tuple[str, ...]) -> dict[tuple[str, str], bool]:
        found: dict[tuple[str, str], bool] = {}
        for ident in lineage:
            for arch, kind, ok in self._load()[ident].firmware:
                found.setdefault((arch, kind), ok)  # the nearest OS's word on each (arch, type)
        return found

    def _network_models(self, devices: set[str]) -> tuple[str, ...]:
        """virtinst's supported_netmodels(): the names of the OS's devices of a net* class."""
        known = (self._devices[d] for d in devices if d in self._devices)
        return tuple(sorted({dev.name for dev in known if dev.klass.startswith("net")}))

    def _related_to_rhel6(self, ident: str) -> bool:
        oses = self._load()
        for other in self._related(ident, ("derives_from", "clones", "upgrades")):
            sid = oses[other].short_ids[0] if oses[other].short_ids else ""
            # virtinst tests `short_id in "rhel6.0"`: a substring test, mirrored as it behaves
            if sid and sid in "rhel6.0":
                return True
        return False

    # --- presets ---
    def _date_today(self) -> datetime.date:
        return self._today or datetime.date.today()

    def _now(self, day: datetime.date) -> datetime.datetime:
        if self._today is not None:
            return datetime.datetime.combine(day, datetime.time(12))
        return datetime.datetime.now()

    def _preset(self, ident: str, arch: str) -> OsPreset:
        day = self._date_today()
        cached = self._presets.get((ident, arch, day))
        if cached is None:
            cached = self._build(ident, arch, day)
            with self._lock:
                if len(self._presets) > 20000:
                    self._presets.clear()  # days went by in a long-lived process: drop old days
                self._presets[(ident, arch, day)] = cached
        return cached

    def _build(self, ident: str, arch: str, day: datetime.date) -> OsPreset:
        rec = self._load()[ident]
        lineage = self._lineage(ident)
        devices = self._all_devices(lineage)
        nics = self._network_models(devices)
        short_id = rec.short_ids[0] if rec.short_ids else ""
        decided = _decide_devices(arch, devices, nics, self._related_to_rhel6(ident))
        minimum = self._resources(lineage, "minimum")
        recommended = self._resources(lineage, "recommended")
        mins = {key: _pick(minimum, key, arch) for key in RESOURCE_KEYS}
        # virtinst: with no recommended value, twice the minimum is the recommendation
        recs = {key: _pick(recommended, key, arch) or 2 * mins[key] for key in RESOURCE_KEYS}
        firmware, firmware_default = _firmware(short_id, arch, self._complete_firmware(lineage))
        family = rec.text.get("family", "")
        return OsPreset(
            id=ident, short_id=short_id, name=rec.text.get("name", "") or short_id, family=family,
            distro=rec.text.get("distro", ""), vendor=rec.text.get("vendor", ""), version=rec.text.get("version", ""),
            release_date=rec.text.get("release-date", ""), eol_date=rec.text.get("eol-date", ""),
            eol=_is_eol(rec, self._now(day)), disk_bus=decided.disk_bus, nic_model=decided.nic_model,
            min_memory_mib=-(-mins["ram"] // MIB), recommended_memory_mib=-(-recs["ram"] // MIB),
            min_storage_bytes=mins["storage"], recommended_storage_bytes=recs["storage"],
            min_vcpus=mins["n-cpus"], recommended_vcpus=recs["n-cpus"], firmware=firmware,
            # osinfo-db has no secure-boot data; an x86 OS that can no longer boot BIOS (win11) is
            # one whose installer demands UEFI Secure Boot, and the one sign of it osinfo gives
            secure_boot=arch in X86 and "efi" in firmware and "bios" not in firmware,
            cloud_init=rec.cloud_init, virtio_scsi=decided.virtio_scsi, usb_tablet=decided.usb_tablet,
            short_ids=tuple(rec.short_ids), codename=rec.text.get("codename", ""),
            release_status=rec.text.get("release-status", ""), arch=arch, arches=tuple(sorted(rec.arches)),
            machine=decided.machine, firmware_default=firmware_default, tpm=firmware_default == "efi",
            clock="localtime" if family in (*WINDOWS_FAMILIES, "solaris") else "utc", usb3=decided.usb3,
            virtio_rng=any(d in devices for d in VIRTIO_RNG), virtio_balloon=any(d in devices for d in VIRTIO_BALLOON),
            guest_agent_channel=decided.guest_agent_channel, derives_from=lineage[1:], network_models=nics,
        )  # fmt: skip

    def _runs_on(self, rec: _Os, arch: str) -> bool:
        """Whether an OS belongs in an architecture's picker: osinfo lists no architecture for it
        (generic entries), or one the host's guests can be."""
        return not rec.arches or bool(rec.arches & set(RUNS_ON.get(arch, (arch,))))

    # --- the API ---
    def get(self, key: str, *, arch: str = "x86_64") -> OsPreset | None:
        """The OS with this id (http://...) or short-id; "generic" is virt-install's own entry for
        an unknown OS (see unknown())."""
        oses = self._load()
        ident = key if key in oses else self._by_short_id.get(key)
        if ident is None:
            return self.unknown(arch=arch) if key == "generic" else None
        return self._preset(ident, arch)

    def presets(self, *, include_eol: bool = False, arch: str = "x86_64") -> list[OsPreset]:
        """Every OS for a picker: grouped by family and distro, newest version first.

        EOL ones only when asked, except the generic Linux entries, which virt-manager always
        offers (the fallback for a distro osinfo does not know).
        """
        found = [self._preset(ident, arch) for ident, rec in self._load().items() if self._runs_on(rec, arch)]
        found = [p for p in found if include_eol or not p.eol or p.generic_linux]
        return sorted(found, key=lambda p: (not p.family, p.family, p.distro, _version_key(p.version), p.name))

    def search(self, text: str, *, limit: int = 50, include_eol: bool = True, arch: str = "x86_64") -> list[OsPreset]:
        """OSes whose name or a short-id contains ``text`` (any case), newest first."""
        needle = text.strip().lower()
        found = [
            p
            for p in (self._preset(ident, arch) for ident in self._load())
            if (include_eol or not p.eol)
            and (needle in p.name.lower() or any(needle in sid.lower() for sid in p.short_ids))
        ]
        found.sort(key=lambda p: (_version_key(p.version), p.name))
        found.sort(key=lambda p: p.release_date, reverse=True)  # stable: undated ones last, by version
        return found[: max(limit, 0)]

    def generic(self, *, arch: str = "x86_64") -> OsPreset:
        """What to use when the user names no OS: the newest of osinfo's "Generic Linux YYYY".

        virt-install 4.1 refuses to go on without an OS and, in that error, offers these linuxYYYY
        entries; its literal last resort, ``--osinfo generic`` (unknown()), has no devices at all
        and so gets IDE and e1000 on i440fx. Without any linuxYYYY in the data, that is returned.
        """
        candidates = [
            self._preset(ident, arch)
            for ident, rec in self._load().items()
            if rec.short_ids and GENERIC_LINUX.match(rec.short_ids[0])
        ]
        if not candidates:
            return self.unknown(arch=arch)
        return max(candidates, key=lambda p: (p.release_date, _int(p.short_id[5:9])))

    def unknown(self, *, arch: str = "x86_64") -> OsPreset:
        """virt-install's own "generic" OS ("Generic or unknown OS. Usage is not recommended."):
        no osinfo entry, so no devices: the oldest, slowest defaults."""
        decided = _decide_devices(arch, set(), (), False)
        _, firmware_default = _firmware("generic", arch, {})
        return OsPreset(
            id="", short_id="generic", name="Generic or unknown OS. Usage is not recommended.", family="",
            distro="", vendor="", version="", release_date="", eol_date="", eol=False, disk_bus=decided.disk_bus,
            nic_model=decided.nic_model, min_memory_mib=0, recommended_memory_mib=0, min_storage_bytes=0,
            recommended_storage_bytes=0, min_vcpus=0, recommended_vcpus=0, firmware=(), secure_boot=False,
            cloud_init=False, virtio_scsi=decided.virtio_scsi, usb_tablet=decided.usb_tablet, short_ids=("generic",),
            arch=arch, machine=decided.machine, firmware_default=firmware_default, tpm=firmware_default == "efi",
            usb3=decided.usb3, guest_agent_channel=decided.guest_agent_channel,
        )  # fmt: skip

    @property
    def version(self) -> str:
        """The osinfo-db release (its VERSION file), "" if the file is missing."""
        try:
            return (self.root / "VERSION").read_text().strip()
        except OSError:
            return ""

    def __len__(self) -> int:
        return len(self._load())


_databases: dict[str, OsDatabase] = {}
_databases_lock = threading.Lock()


def database(root: str | Path | None = None) -> OsDatabase:
    """The process's OsDatabase for a directory (None: $VIRTFLEET_OSINFO_DIR, else
    /usr/share/osinfo), parsed once and shared. A missing directory raises VirtError."""
    where = str(Path(root if root is not None else os.environ.get(ROOT_ENV) or DEFAULT_ROOT).resolve())
    with _databases_lock:
        db = _databases.get(where)
        if db is None:
            db = _databases[where] = OsDatabase(where)
        return db
