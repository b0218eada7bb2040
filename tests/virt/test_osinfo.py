"""virt.osinfo against the installed osinfo-db (and virt-install's own answers for it), and against
small osinfo trees written here, where inheritance and per-architecture resources are exact."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml.ElementTree as DET
import pytest

from virt.errors import VirtError
from virt.osinfo import OsDatabase, OsPreset, database

SYSTEM = Path("/usr/share/osinfo")
GiB = 2**30
needs_osinfo_db = pytest.mark.skipif(not (SYSTEM / "os").is_dir(), reason="osinfo-db is not installed")


@pytest.fixture(scope="module")
def real() -> OsDatabase:
    if not (SYSTEM / "os").is_dir():
        pytest.skip("osinfo-db is not installed")
    return OsDatabase(SYSTEM)


def _os_element(path: Path) -> ET.Element:
    """The test's own plain reading of one osinfo file, to compare against."""
    found = DET.parse(path).getroot().find("os")
    assert found is not None
    return found


def _resource(os_el: ET.Element, kind: str, key: str, arch: str = "all") -> int:
    for res in os_el.findall("resources"):
        if res.get("arch") == arch:
            value = res.findtext(f"{kind}/{key}")
            if value:
                return int(value)
    return 0


# --- the installed osinfo-db ---------------------------------------------------------------------------
def test_debian_gets_virtio_disk_and_nic_and_the_minimums_its_xml_gives(real):
    # osinfo-db 20221203 (Debian 12's package) predates the debian12 entry; use it when present
    short_id, path = "debian12", SYSTEM / "os/debian.org/debian-12.xml"
    if not path.exists():
        short_id, path = "debian11", SYSTEM / "os/debian.org/debian-11.xml"
    xml = _os_element(path)
    p = real.get(short_id)
    assert p is not None
    assert (p.disk_bus, p.nic_model, p.machine) == ("virtio", "virtio", "q35")
    assert p.family == "linux" and p.distro == "debian" and p.id == xml.get("id")
    assert p.min_memory_mib * 2**20 == _resource(xml, "minimum", "ram")
    assert p.min_storage_bytes == _resource(xml, "minimum", "storage")
    assert p.recommended_storage_bytes == _resource(xml, "recommended", "storage")
    assert p.min_vcpus == _resource(xml, "minimum", "n-cpus")
    assert p.virtio_scsi and p.usb_tablet and p.guest_agent_channel
    assert p.cloud_init  # its genericcloud qcow2 image is marked cloud-init="true"
    assert p.firmware_default == "bios" and not p.secure_boot and not p.tpm
    assert p.label() == f"{p.name} ({short_id})"


def test_windows_10_gets_sata_and_e1000e_on_q35(real):
    p = real.get("win10")
    assert p is not None
    assert (p.machine, p.disk_bus, p.nic_model) == ("q35", "sata", "e1000e")
    assert not p.virtio_scsi and p.clock == "localtime" and p.windows
    assert p.firmware_default == "bios" and not p.secure_boot
    assert p.min_memory_mib == 2048 and p.recommended_memory_mib == 4096


def test_windows_11_needs_uefi_with_secure_boot_and_a_tpm(real):
    p = real.get("win11")
    assert p is not None
    assert p.firmware == ("efi",)  # osinfo: efi, and bios supported="false"
    assert p.firmware_default == "efi" and p.secure_boot and p.tpm
    assert (p.disk_bus, p.nic_model) == ("sata", "e1000e")
    # win11 gives only x86_64 minimums: virtinst recommends twice them
    xml = _os_element(SYSTEM / "os/microsoft.com/win-11.xml")
    assert p.min_memory_mib * 2**20 == _resource(xml, "minimum", "ram", "x86_64")
    assert p.recommended_memory_mib == 2 * p.min_memory_mib
    assert p.recommended_storage_bytes == 2 * p.min_storage_bytes == 2 * _resource(xml, "minimum", "storage", "x86_64")
    assert (p.min_vcpus, p.recommended_vcpus) == (2, 4)
    # ... and nothing for another architecture, which falls back only to arch="all"
    arm = real.get("win11", arch="aarch64")
    assert arm is not None and arm.min_memory_mib == 0 and arm.firmware == ()


@pytest.mark.parametrize(
    ("short_id", "nic"),
    [("rhel4.0", "e1000"), ("msdos6.22", "e1000"), ("freebsd7.0", "ne2k_pci"), ("openbsd5.0", "pcnet")],
)
def test_old_oses_get_ide_on_i440fx_and_the_nic_they_know(real, short_id, nic):
    p = real.get(short_id)
    assert p is not None
    assert (p.machine, p.disk_bus, p.nic_model) == ("pc", "ide", nic)
    assert p.eol and not p.usb3 and p.firmware == ()


def test_another_machine_type_gets_the_bus_and_nic_virtinst_uses_there(real):
    old = real.get("rhel4.0").on_machine("q35")
    assert (old.machine, old.disk_bus, old.nic_model) == ("q35", "sata", "e1000e")  # no IDE on q35
    win = real.get("win10").on_machine("pc-i440fx-7.2")
    assert (win.disk_bus, win.nic_model) == ("ide", "e1000")
    assert real.get("freebsd7.0").on_machine("pc").nic_model == "ne2k_pci"
    debian = real.get("debian11").on_machine("pc")
    assert (debian.machine, debian.disk_bus, debian.nic_model) == ("pc", "virtio", "virtio")
    assert real.get("debian11", arch="aarch64").on_machine("q35").machine == "virt"


def test_an_os_with_nothing_said_has_zero_sizes(real):
    p = real.get("msdos6.22")
    assert p is not None
    sizes = (p.min_memory_mib, p.recommended_memory_mib, p.min_storage_bytes, p.recommended_storage_bytes,
             p.min_vcpus, p.recommended_vcpus)  # fmt: skip
    assert sizes == (0, 0, 0, 0, 0, 0)


def test_eol_as_virtinst_judges_it(real):
    on = OsDatabase(SYSTEM, today=datetime.date(2024, 6, 1))
    assert on.get("winxp").eol  # eol-date 2009 passed
    assert not on.get("win10").eol  # eol-date 2029 ahead
    assert not on.get("archlinux").eol  # rolling, never EOL
    # no EOL date: EOL ten years after release
    debian11 = on.get("debian11")
    assert debian11.eol_date == "" and not debian11.eol
    old = next(p for p in on.presets(include_eol=True) if not p.eol_date and "2000" < p.release_date < "2010")
    assert old.eol
    assert not OsDatabase(SYSTEM, today=datetime.date(1995, 1, 1)).get("winxp").eol


def test_devices_come_through_derives_from(real):
    # Debian testing lists no devices of its own: virtio is what it derives from Debian 11, 10, ...
    own = _os_element(SYSTEM / "os/debian.org/debian-testing.xml")
    assert own.find("devices") is None
    p = real.get("debiantesting")
    assert p is not None
    assert (p.disk_bus, p.nic_model, p.machine) == ("virtio", "virtio", "q35")
    assert p.derives_from[0] == "http://debian.org/debian/11"


def test_generic_is_the_newest_generic_linux(real):
    newest = max(p.short_id for p in real.presets(include_eol=True) if p.generic_linux)
    g = real.generic()
    assert g.short_id == newest
    if (SYSTEM / "os/libosinfo.org/linux-2022.xml").exists():
        assert newest >= "linux2022"
    assert (g.disk_bus, g.nic_model, g.machine) == ("virtio", "virtio", "q35")
    assert g.min_memory_mib > 0


def test_generic_by_name_is_virt_installs_own_unknown_os(real):
    unknown = real.get("generic")
    assert unknown == real.unknown()
    assert (unknown.machine, unknown.disk_bus, unknown.nic_model) == ("pc", "ide", "e1000")
    assert unknown.id == "" and unknown.firmware == () and not unknown.eol


def test_get_by_id_and_any_short_id(real):
    by_id = real.get("http://debian.org/debian/11")
    assert by_id is not None
    assert by_id == real.get("debian11") == real.get("debianbullseye")
    assert by_id.short_ids == ("debian11", "debianbullseye")
    assert real.get("no-such-os") is None
    assert real.get("") is None


def test_search_by_name_or_short_id_newest_first(real):
    found = real.search("DEBIAN")
    assert found and all(p.distro == "debian" for p in found)
    dated = [p.release_date for p in found if p.release_date]
    assert dated == sorted(dated, reverse=True)
    assert [p.short_id for p in real.search("debianbullseye")] == ["debian11"]
    assert {"win10", "win11"} <= {p.short_id for p in real.search("win1")}
    assert len(real.search("linux", limit=3)) == 3
    assert real.search("zzz-nothing") == []
    assert all(not p.eol for p in real.search("win", include_eol=False))


def test_presets_as_a_picker_shows_them(real):
    current = real.presets()
    everything = real.presets(include_eol=True)
    assert len(current) < len(everything)
    # EOL ones are left out, except the generic Linux entries (virt-manager always offers them)
    assert all(not p.eol or p.generic_linux for p in current)
    assert len({p.id for p in everything}) == len(everything)
    keys = [(not p.family, p.family, p.distro) for p in everything]
    assert keys == sorted(keys)
    debian = [p.short_id for p in everything if p.distro == "debian" and p.version.isdigit()]
    assert debian[:3] == ["debian11", "debian10", "debian9"]
    assert real.get("win11") in current and real.get("winxp") not in current
    # an aarch64 host's picker has no OS whose media are for x86 only
    arm = real.presets(arch="aarch64")
    assert real.get("win11", arch="aarch64") not in arm
    assert all(p.machine == "virt" and p.disk_bus == "virtio" for p in arm)


def test_version_is_the_version_file(real):
    assert real.version == (SYSTEM / "VERSION").read_text().strip()
    assert real.version


def test_loading_everything_is_fast_and_frozen():
    if not (SYSTEM / "os").is_dir():
        pytest.skip("osinfo-db is not installed")
    started = time.perf_counter()
    db = OsDatabase(SYSTEM)
    presets = db.presets(include_eol=True)
    took = time.perf_counter() - started
    print(f"osinfo-db: {len(db)} OSes parsed and made presets in {took:.3f}s")
    # measured 0.3 s on the 2-core box; the bound leaves room for a loaded machine
    assert took < 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        presets[0].name = "x"  # type: ignore[misc]


# --- virt-install itself, where it runs ---------------------------------------------------------------------
VIRTINST_DUMP = textwrap.dedent(
    """
    import gettext, json, sys
    sys.path.insert(0, "/usr/share/virt-manager")
    gettext.install("virt-manager")
    from virtinst import osdict
    LEGACY = ["e1000", "rtl8139", "ne2k_pci", "pcnet"]
    out = {}
    for o in osdict.OSDB.list_os():
        if o.is_generic():
            continue
        q35 = bool(o.supports_chipset_q35())
        nets = o.supported_netmodels()
        # the choices of virtinst's Guest/DeviceDisk/DeviceInterface defaults for x86_64 on qemu
        disk = "virtio" if o.supports_virtiodisk() else ("sata" if q35 else "ide")
        if o.supports_virtionet():
            nic = "virtio"
        elif q35:
            nic = "e1000e"
        else:
            nic = next((m for m in LEGACY if m in nets), "e1000")
        res = o.get_recommended_resources()
        out[o.full_id] = {
            "short_id": o.name, "name": o.label, "distro": o.distro, "version": o.version or "",
            "eol": bool(o.eol), "machine": "q35" if q35 else "pc", "disk_bus": disk, "nic_model": nic,
            "min_ram": res.get_minimum_ram("x86_64") or 0, "rec_ram": res.get_recommended_ram("x86_64") or 0,
            "rec_storage": res.get_recommended_storage("x86_64") or 0,
            "rec_ncpus": res.get_recommended_ncpus("x86_64") or 0,
            "efi": bool(o.requires_firmware_efi("x86_64")), "virtio_scsi": bool(o.supports_virtioscsi()),
            "serial": bool(o.supports_virtioserial()), "rng": bool(o.supports_virtiorng()),
            "balloon": bool(o.supports_virtioballoon()), "usb3": bool(o.supports_usb3()),
            "clock": o.get_clock(), "windows": bool(o.is_windows()), "netmodels": sorted(set(nets)),
            "all_names": o.all_names,
        }
    json.dump(out, sys.stdout)
    """
)


def _virtinst_answers() -> dict:
    python = "/usr/bin/python3"
    if not os.path.exists(python) or not os.path.isdir("/usr/share/virt-manager/virtinst"):
        pytest.skip("virt-install (virtinst) is not installed for the system Python")
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C", "HOME": os.environ.get("HOME", "/tmp")}
    probe = subprocess.run([python, "-c", "import gi; gi.require_version('Libosinfo', '1.0'); "
                            "from gi.repository import Libosinfo"], env=env, capture_output=True, timeout=60)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"libosinfo's GObject bindings do not import under {python}: {probe.stderr.decode()[-300:]}")
    done = subprocess.run([python, "-c", VIRTINST_DUMP], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@needs_osinfo_db
@pytest.mark.timeout(300)
def test_every_os_answers_as_virtinst_does(real):
    """All of osinfo-db, field by field, against virtinst's osdict on libosinfo (the baseline)."""
    theirs = _virtinst_answers()
    assert len(theirs) == len(real)
    wrong = []
    for ident, v in theirs.items():
        p = real.get(ident)
        assert p is not None, ident
        mine = {
            "short_id": p.short_id, "name": p.name, "distro": p.distro, "version": p.version, "eol": p.eol,
            "machine": p.machine, "disk_bus": p.disk_bus, "nic_model": p.nic_model,
            # memory in whole MiB, as the preset carries it (rounded up)
            "min_ram": p.min_memory_mib, "rec_ram": p.recommended_memory_mib,
            "rec_storage": p.recommended_storage_bytes, "rec_ncpus": p.recommended_vcpus,
            "efi": p.firmware_default == "efi", "virtio_scsi": p.virtio_scsi, "serial": p.guest_agent_channel,
            "rng": p.virtio_rng, "balloon": p.virtio_balloon, "usb3": p.usb3, "clock": p.clock,
            "windows": p.windows, "netmodels": list(p.network_models), "all_names": sorted(set(p.short_ids)),
        }  # fmt: skip
        v["min_ram"], v["rec_ram"] = -(-v["min_ram"] // 2**20), -(-v["rec_ram"] // 2**20)
        wrong += [f"{p.short_id} {key}: ours {mine[key]!r}, virtinst {v[key]!r}" for key in v if mine[key] != v[key]]
    assert wrong == [], "\n".join(wrong[:40])


# --- small osinfo trees written here --------------------------------------------------------------------------
DEVICES = {
    "1af4-1001": ("virtio-block", "block"),
    "1af4-1041": ("virtio1.0-net", "net"),
    "1af4-1000": ("virtio-net", "net"),
    "8086-100e": ("e1000", "net"),
    "10ec-8139": ("rtl8139", "net"),
    "8086-10d3": ("e1000e", "net"),
}
VIRTIO_BLOCK = '<device id="http://pcisig.com/pci/1af4/1001"/>'
VIRTIO1_NET = '<device id="http://pcisig.com/pci/1af4/1041"/>'
Q35 = '<device id="http://qemu.org/chipset/x86/q35"/>'
RTL8139 = '<device id="http://pcisig.com/pci/10ec/8139"/>'


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<?xml version="1.0"?>\n<libosinfo version="0.0.1">\n{text}\n</libosinfo>\n')


def _os(root: Path, name: str, body: str, *, short_ids: tuple[str, ...] = (), fragment: str = "") -> None:
    """os/example.org/<name>.xml (or a fragment in <name>.d/) with id http://example.org/<name>."""
    shorts = "".join(f"<short-id>{s}</short-id>" for s in (short_ids or (name,)))
    text = f'<os id="http://example.org/{name}">{shorts}{textwrap.dedent(body)}</os>'
    where = root / "os/example.org" / (f"{name}.d/{fragment}.xml" if fragment else f"{name}.xml")
    _write(where, text)


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "osinfo"
    for suffix, (name, klass) in DEVICES.items():
        vendor, product = suffix.split("-")
        _write(root / f"device/pcisig.com/pci-{suffix}.xml",
               f'<device id="http://pcisig.com/pci/{vendor}/{product}"><name>{name}</name><class>{klass}</class></device>')  # fmt: skip
    _write(root / "device/qemu.org/chipset-x86-q35.xml",
           '<device id="http://qemu.org/chipset/x86/q35"><name>qemu-x86-q35</name><class>chipset</class></device>')  # fmt: skip
    (root / "VERSION").write_text("20990101\n")
    # base: virtio and q35, resources for all architectures and a bigger x86_64 minimum, and EFI
    _os(root, "base", f"""
        <name>Base 1</name><name xml:lang="de">Basis 1</name><version>1</version><family>linux</family>
        <distro>ex</distro><release-date>2020-05-01</release-date>
        <firmware arch="x86_64" type="efi"/>
        <resources arch="all">
          <minimum><n-cpus>1</n-cpus><ram>1073741824</ram><storage>10737418240</storage></minimum>
          <recommended><ram>4294967296</ram></recommended>
        </resources>
        <resources arch="x86_64"><minimum><ram>2147483648</ram></minimum></resources>
        <devices>{VIRTIO_BLOCK}{VIRTIO1_NET}{Q35}</devices>
        <media arch="x86_64"/>
        <image arch="x86_64" format="qcow2" cloud-init="true"/>
    """)  # fmt: skip
    # child: no devices of its own; an inheriting resources block that sets only recommended storage
    _os(root, "child", """
        <name>Child 2</name><version>2</version><family>linux</family><distro>ex</distro>
        <release-date>2021-05-01</release-date><derives-from id="http://example.org/base"/>
        <resources arch="all" inherit="true"><recommended><storage>53687091200</storage></recommended></resources>
    """)  # fmt: skip
    # grandchild: takes virtio-block away and drops BIOS
    _os(root, "grandchild", """
        <name>Grandchild 3</name><version>3</version><family>linux</family><distro>ex</distro>
        <release-date>2022-05-01</release-date><derives-from id="http://example.org/child"/>
        <firmware arch="x86_64" type="bios" supported="false"/>
        <devices><device id="http://pcisig.com/pci/1af4/1001" supported="false"/></devices>
    """)  # fmt: skip
    # greatgrandchild: lists virtio-block as supported again, which libosinfo does not honour
    _os(root, "greatgrandchild", f"""
        <name>Greatgrandchild 4</name><version>4</version><family>linux</family><distro>ex</distro>
        <derives-from id="http://example.org/grandchild"/><devices>{VIRTIO_BLOCK}</devices>
        <firmware arch="x86_64" type="bios"/>
    """)  # fmt: skip
    # upgrader: upgrades base but does not derive from it, so inherits nothing; knows rtl8139 only
    _os(root, "upgrader", f"""
        <name>Upgrader 1</name><version>1</version><family>linux</family><distro>up</distro>
        <release-date>2000-01-01</release-date><upgrades id="http://example.org/base"/>
        <devices>{RTL8139}</devices>
    """)  # fmt: skip
    _os(root, "rolling", """
        <name>Rolling</name><version>rolling</version><family>linux</family><distro>roll</distro>
        <release-status>rolling</release-status><release-date>2000-01-01</release-date>
    """)  # fmt: skip
    _os(root, "ended", """
        <name>Ended 9</name><version>9</version><family>winnt</family><distro>win</distro>
        <release-date>2021-01-01</release-date><eol-date>2023-01-01</eol-date><media arch="aarch64"/>
    """)  # fmt: skip
    return root


def test_devices_and_firmware_inherit_through_derives_from(tmp_path):
    db = OsDatabase(_tree(tmp_path))
    child = db.get("child")
    assert (child.machine, child.disk_bus, child.nic_model) == ("q35", "virtio", "virtio")
    assert child.firmware == ("efi", "bios") and child.firmware_default == "bios"
    assert child.derives_from == ("http://example.org/base",)
    grandchild = db.get("grandchild")
    # no virtio-block any more: on q35 that is SATA; the NIC still comes from base
    assert (grandchild.machine, grandchild.disk_bus, grandchild.nic_model) == ("q35", "sata", "virtio")
    assert grandchild.firmware == ("efi",) and grandchild.firmware_default == "efi"
    assert grandchild.secure_boot and grandchild.tpm
    great = db.get("greatgrandchild")
    assert great.disk_bus == "sata"  # marked unsupported further up the line: gone for good
    assert great.firmware == ("efi", "bios") and not great.secure_boot  # the nearest word on BIOS wins


def test_upgrades_is_not_inheritance(tmp_path):
    p = OsDatabase(_tree(tmp_path)).get("upgrader")
    assert (p.machine, p.disk_bus, p.nic_model) == ("pc", "ide", "rtl8139")
    assert p.min_memory_mib == 0 and p.firmware == () and p.derives_from == ()


def test_resources_per_arch_fall_back_to_all_and_inherit_only_when_asked(tmp_path):
    db = OsDatabase(_tree(tmp_path))
    base = db.get("base")
    assert base.min_memory_mib == 2048  # its x86_64 block
    assert base.recommended_memory_mib == 4096  # none for x86_64: arch="all"
    assert (base.min_storage_bytes, base.recommended_storage_bytes) == (10 * GiB, 20 * GiB)  # twice the minimum
    assert (base.min_vcpus, base.recommended_vcpus) == (1, 2)
    arm = db.get("base", arch="aarch64")
    assert arm.min_memory_mib == 1024 and arm.machine == "virt" and arm.disk_bus == "virtio"
    child = db.get("child")
    # the inheriting arch="all" block filled from base's arch="all" one: base's x86_64 minimum stays base's
    assert child.min_memory_mib == 1024
    assert child.recommended_storage_bytes == 50 * GiB and child.min_storage_bytes == 10 * GiB
    assert child.recommended_memory_mib == 4096
    # a block without inherit="true" takes nothing: grandchild has no <resources> at all
    assert db.get("grandchild").min_memory_mib == 0


def test_fragments_in_a_d_directory_add_to_their_os(tmp_path):
    root = _tree(tmp_path)
    _os(root, "upgrader", f"<name>Upgrader One</name><devices>{VIRTIO1_NET}</devices>",
        short_ids=("upgrader", "upgrader-alias"), fragment="extra")  # fmt: skip
    db = OsDatabase(root)
    p = db.get("upgrader-alias")
    assert p is not None and p.short_ids == ("upgrader", "upgrader-alias")
    assert p.name == "Upgrader One" and p.nic_model == "virtio" and p.distro == "up"


def test_names_are_the_untranslated_ones_and_cloud_images_count(tmp_path):
    db = OsDatabase(_tree(tmp_path))
    assert db.get("base").name == "Base 1"
    assert db.get("base").cloud_init and not db.get("child").cloud_init


def test_eol_rules(tmp_path):
    db = OsDatabase(_tree(tmp_path), today=datetime.date(2024, 1, 1))
    assert db.get("ended").eol  # its eol-date passed
    assert db.get("upgrader").eol  # released 2000, no eol-date: over ten years
    assert not db.get("rolling").eol  # rolling releases never end
    assert not db.get("base").eol
    assert not OsDatabase(_tree(tmp_path / "b"), today=datetime.date(2022, 12, 31)).get("ended").eol


def test_presets_and_search_order(tmp_path):
    db = OsDatabase(_tree(tmp_path), today=datetime.date(2024, 1, 1))
    names = [p.short_id for p in db.presets()]
    assert names == ["greatgrandchild", "grandchild", "child", "base", "rolling"]  # ex newest first, then roll
    assert "upgrader" in [p.short_id for p in db.presets(include_eol=True)]
    assert "ended" not in [p.short_id for p in db.presets(include_eol=True)]  # aarch64 media only
    assert "ended" in [p.short_id for p in db.presets(include_eol=True, arch="aarch64")]
    assert [p.short_id for p in db.search("CHILD")] == ["grandchild", "child", "greatgrandchild"]  # undated last
    assert db.search("child", limit=1) == [db.get("grandchild")]


def test_generic_picks_the_newest_linux_yyyy_else_virt_installs_unknown(tmp_path):
    root = _tree(tmp_path)
    assert OsDatabase(root).generic() == OsDatabase(root).unknown()
    for year in (2018, 2022, 2020):
        _os(root, f"linux-{year}", f"""
            <name>Generic Linux {year}</name><version>{year}</version><family>linux</family>
            <release-date>{year}-01-01</release-date><derives-from id="http://example.org/base"/>
        """, short_ids=(f"linux{year}",))  # fmt: skip
    g = OsDatabase(root).generic()
    assert g.short_id == "linux2022" and g.disk_bus == "virtio" and g.generic_linux


def test_broken_files_and_dtds_are_skipped(tmp_path, caplog):
    root = _tree(tmp_path)
    (root / "os/example.org/broken.xml").write_text("<libosinfo><os id='x'>")
    (root / "os/example.org/entities.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE libosinfo [<!ENTITY a "aaaa">]>'
        '<libosinfo><os id="http://example.org/entities"><short-id>ent</short-id><name>&a;</name></os></libosinfo>'
    )
    db = OsDatabase(root)
    assert db.get("ent") is None and db.get("base") is not None
    assert "broken.xml" in caplog.text and "entities.xml" in caplog.text


def test_a_missing_osinfo_db_says_to_install_it(tmp_path, monkeypatch):
    with pytest.raises(VirtError) as raised:
        OsDatabase(tmp_path / "nowhere")
    assert "osinfo-db" in str(raised.value) and "install" in str(raised.value)
    monkeypatch.setenv("VIRTFLEET_OSINFO_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(VirtError):
        database()


def test_database_is_shared_per_directory(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    monkeypatch.setenv("VIRTFLEET_OSINFO_DIR", str(root))
    db = database()
    assert db is database() is database(root)
    assert db.version == "20990101"
    assert isinstance(db.get("base"), OsPreset)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    assert database(copy) is not db
