"""Lab guests booted from the lab pool's disk images: they see their disks and CD-ROMs (hot-plugged
ones too), and lab-cloud.qcow2 reads a cloud-init NoCloud seed on a SATA, IDE or virtio-SCSI CD-ROM
or a virtio disk. The seed reader (busybox sh + awk, as in the guest) is also checked on this
machine, without QEMU."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from xml.sax.saxutils import escape

import libvirt
import pytest

import lab
from lab.core import LAB_POOL_PATH
from lab.guests import LAB_POOL, serial_log_path
from lab.images import BUSYBOX, CLOUD_NO_SEED, MIME_AWK, NOCLOUD_AWK, NOCLOUD_READ
from lab.media import CLOUD_NAME, QCOW2_NAME

pytestmark = pytest.mark.lab

BOOT_TIMEOUT = 90  # SeaBIOS + SYSLINUX reading 16 MB through int 13h, under TCG, on a busy machine
EVENT_TIMEOUT = 30

USER_DATA = """\
#cloud-config
hostname: web1  # wins over meta-data's local-hostname, as with cloud-init
users:
  - name: alice
    gecos: "Alice A."
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@x
      - 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ alice@y'
    lock_passwd: false
    passwd: $6$rounds=4096$salt$hash
  - default
"""


# -- the seed parser on this machine (busybox awk, the same script the guest runs) --------------------


def _parse(tmp_path: Path, meta_data: str, user_data: str) -> dict[str, str]:
    """What /bin/vf-nocloud (busybox sh + awk, as in the guest) makes of a seed with these files."""
    if not Path(BUSYBOX).exists():
        pytest.fail(f"{BUSYBOX} (busybox-static) is not installed: ./virtfleet setup installs it")
    seed, etc, bin_ = tmp_path / "seed", tmp_path / "etc", tmp_path / "bin"
    for d in (seed, etc, bin_):
        d.mkdir()
    (seed / "meta-data").write_text(meta_data)
    (seed / "user-data").write_text(user_data)
    (etc / "vf-nocloud.awk").write_text(NOCLOUD_AWK)
    (etc / "vf-mime.awk").write_text(MIME_AWK)
    (bin_ / "vf-nocloud").write_text(NOCLOUD_READ)
    for applet in ("awk", "grep", "base64", "cat", "mkdir"):  # busybox's, not this machine's
        (bin_ / applet).symlink_to(BUSYBOX)
    out = subprocess.run(
        [BUSYBOX, "sh", str(bin_ / "vf-nocloud"), str(seed)],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
        env={"PATH": str(bin_), "VF_ETC": str(etc), "VF_WORK": str(tmp_path / "work")},
    )
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def test_parser_reads_the_seed_virtfleet_writes(tmp_path: Path) -> None:
    got = _parse(tmp_path, "instance-id: iid-web1\nlocal-hostname: web1-meta\n", USER_DATA)
    assert got == {
        "instance_id": "iid-web1",
        "local_hostname": "web1-meta",
        "hostname": "web1",
        "fqdn": "",
        "user": "alice",
        "password": "yes",
        "ssh_keys": "2",
    }


@pytest.mark.parametrize(
    ("user_data", "expected"),
    [
        # sequences at their key's indentation, quoted keys and values, comments, CRLF
        (
            '#cloud-config\r\n"hostname": \'db-1\'\r\nusers:\r\n- name: "bob"   # the admin\r\n'
            "  ssh_authorized_keys:\r\n  - ssh-ed25519 AAAA bob@x\r\n  plain_text_passwd: 'it''s'\r\n",
            {"hostname": "db-1", "user": "bob", "password": "yes", "ssh_keys": "1"},
        ),
        # the default user, renamed by top-level user, with top-level keys and chpasswd
        (
            "#cloud-config\nusers: [default]\nuser: {name: carol}\nssh_authorized_keys: [k1, k2, k3]\n"
            "chpasswd:\n  expire: false\n  list: |\n    carol:secret\n",
            {"user": "carol", "password": "yes", "ssh_keys": "3"},
        ),
        # cloud-init's default user kept first, then the named one (what virt.seed writes): the named one
        (
            "#cloud-config\nusers:\n- default\n- name: alice\n  passwd: $6$x$y\n  lock_passwd: false\n"
            "  ssh_authorized_keys:\n  - ssh-ed25519 AAAA alice@x\n",
            {"user": "alice", "password": "yes", "ssh_keys": "1"},
        ),
        # users given as a string; a passwd-less user has no password; keys of a nested key are not its
        (
            "#cloud-config\nusers: default\n",
            {"user": "default", "password": "no", "ssh_keys": "0"},
        ),
        (
            "#cloud-config\nusers:\n  -\n    name: dave\n    groups:\n      - wheel\n    lock_passwd: true\n"
            "    ssh_authorized_keys: ['a b', \"c d\"]\n",
            {"user": "dave", "password": "no", "ssh_keys": "2"},
        ),
        # a user's own keys win; without any, the top-level ones are reported
        (
            "#cloud-config\nssh_authorized_keys:\n  - top1\nusers:\n  - name: erin\n    hashed_passwd: x\n",
            {"user": "erin", "password": "yes", "ssh_keys": "1"},
        ),
        # fqdn only; nothing about users: cloud-init's default user; top-level password
        (
            "#cloud-config\nfqdn: host7.example.com\npassword: hunter2\n",
            {"fqdn": "host7.example.com", "user": "default", "password": "yes", "ssh_keys": "0"},
        ),
        # an empty users list means no user at all; a hostname inside a file's content is not the hostname
        (
            "#cloud-config\nusers: []\nwrite_files:\n  - path: /etc/x\n    content: |\n      hostname: nope\n",
            {"hostname": "", "user": "none", "password": "no"},
        ),
        # not #cloud-config (a script): nothing from it
        (
            "#!/bin/sh\nhostname: nope\n",
            {"user": "default", "password": "no", "ssh_keys": "0"},
        ),
    ],
)
def test_parser_is_tolerant_of_yaml_styles(tmp_path: Path, user_data: str, expected: dict[str, str]) -> None:
    got = _parse(tmp_path, "instance-id: i-1\n", user_data)
    assert {k: got.get(k, "") for k in expected} == expected


@pytest.mark.parametrize("charset", ["us-ascii", "utf-8"], ids=["7bit", "base64"])
def test_parser_reads_the_cloud_config_parts_of_a_mime_multipart(tmp_path: Path, charset: str) -> None:
    # a script beside a #cloud-config, as Virtfleet writes user-data that is no #cloud-config of its own
    outer = MIMEMultipart(boundary="==virtfleet-0123456789abcdef==")
    outer.attach(MIMEText("#!/bin/sh\nhostname: nope\necho hi\n", "x-shellscript", "us-ascii"))
    gecos = "Zoë" if charset == "utf-8" else "Zoe"
    cfg = f"#cloud-config\nhostname: mime1\nusers:\n- default\n- name: zoe\n  gecos: {gecos}\n  passwd: x\n"
    outer.attach(MIMEText(cfg, "cloud-config", charset))
    got = _parse(tmp_path, "instance-id: i-m\n", outer.as_string())
    assert {k: got[k] for k in ("hostname", "user", "password", "ssh_keys")} == {
        "hostname": "mime1",
        "user": "zoe",
        "password": "yes",
        "ssh_keys": "0",
    }


def test_parser_reads_json_meta_data(tmp_path: Path) -> None:
    got = _parse(tmp_path, '{"instance-id":"i-9", "local-hostname": "m9"}\n', "")
    assert (got["instance_id"], got["local_hostname"]) == ("i-9", "m9")


# -- guests booted from the lab pool ---------------------------------------------------------------------


def nocloud_iso(meta_data: str, user_data: str, network_config: str | None = None) -> bytes:
    """A NoCloud seed as cloud-localds makes it: ISO 9660 + Joliet + Rock Ridge, volume id cidata."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident="cidata", joliet=3, rock_ridge="1.09")
    files = {"meta-data": meta_data, "user-data": user_data}
    if network_config is not None:
        files["network-config"] = network_config
    for k, (name, text) in enumerate(files.items()):
        data = text.encode()
        iso.add_fp(io.BytesIO(data), len(data), f"/FILE{k}.;1", rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def nocloud_vfat(tmp_path: Path, meta_data: str, user_data: str) -> bytes:
    """The other NoCloud seed format: a vfat file system labelled CIDATA (upper case, as mkfs makes it)."""
    for prog in ("mkfs.vfat", "mcopy"):
        if shutil.which(prog) is None:
            pytest.fail(f"{prog} (dosfstools / mtools) is not installed: ./virtfleet setup installs it")
    img = tmp_path / "seed.vfat"
    subprocess.run(["mkfs.vfat", "-C", "-n", "CIDATA", str(img), "1024"], check=True, capture_output=True)
    for name, text in (("meta-data", meta_data), ("user-data", user_data)):
        (tmp_path / name).write_text(text)
        subprocess.run(["mcopy", "-i", str(img), str(tmp_path / name), f"::{name}"], check=True, capture_output=True)
    return img.read_bytes()


class Pool:
    """Volumes made in a host's lab pool for one test, deleted afterwards."""

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.conn = conn
        self.pool = conn.storagePoolLookupByName(LAB_POOL)
        self.names: list[str] = []

    def overlay(self, base: str) -> str:
        """A qcow2 volume backed by the pool's `base` image (what a clone of it is)."""
        name = f"test-media-{uuid.uuid4().hex[:8]}.qcow2"
        backing = self.pool.storageVolLookupByName(base).path()
        self.pool.createXML(
            f"""<volume><name>{name}</name><capacity unit='MiB'>32</capacity>
              <target><format type='qcow2'/></target>
              <backingStore><path>{escape(backing)}</path><format type='qcow2'/></backingStore></volume>""",
            0,
        )
        self.names.append(name)
        return name

    def raw(self, mib: int = 0, data: bytes = b"") -> str:
        """A raw volume: `mib` MiB of zeros, or `data` uploaded through libvirt."""
        name = f"test-media-{uuid.uuid4().hex[:8]}.img"
        size = len(data) or mib * 1024 * 1024
        vol = self.pool.createXML(
            f"<volume><name>{name}</name><capacity unit='B'>{size}</capacity>"
            "<target><format type='raw'/></target></volume>",
            0,
        )
        self.names.append(name)
        if data:
            stream = self.conn.newStream(0)
            vol.upload(stream, 0, len(data), 0)
            for i in range(0, len(data), 1 << 20):
                stream.send(data[i : i + (1 << 20)])
            stream.finish()
        return name

    def delete_all(self) -> None:
        for name in self.names:
            try:
                self.pool.storageVolLookupByName(name).delete(0)
            except libvirt.libvirtError:
                pass


def disk_xml(volume: str, target: str, bus: str, *, cdrom: bool = False, fmt: str = "raw", boot: bool = False) -> str:
    device = "cdrom" if cdrom else "disk"
    extra = ("<readonly/>" if cdrom else "") + ("<boot order='1'/>" if boot else "")
    return (
        f"<disk type='volume' device='{device}'><driver name='qemu' type='{fmt}'/>"
        f"<source pool='{LAB_POOL}' volume='{escape(volume)}'/><target dev='{target}' bus='{bus}'/>{extra}</disk>"
    )


VIRTIO_SCSI = "<controller type='scsi' model='virtio-scsi'/>"


def domain_xml(name: str, machine: str, disks: list[str], *, smbios_name: bool = True) -> str:
    """A 128 MiB TCG guest booting from its disks through SeaBIOS (no direct kernel boot), with a
    logged serial console. Without `smbios_name` it is like a VM Virtfleet creates: nothing tells the
    guest its name."""
    n = escape(name)
    sysinfo = os_smbios = ""
    if smbios_name:
        sysinfo = f"<sysinfo type='smbios'><system><entry name='product'>{n}</entry></system></sysinfo>"
        os_smbios = "<smbios mode='sysinfo'/>"
    ports = ""
    if machine == "q35":  # spare root ports: a q35 guest hot-plugs PCIe devices into them
        ports = (
            "<controller type='pci' index='0' model='pcie-root'/>"
            + "<controller type='pci' model='pcie-root-port'/>" * 3
        )
    return f"""<domain type='qemu'>
  <name>{n}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  {sysinfo}
  <os><type arch='x86_64' machine='{machine}'>hvm</type>{os_smbios}</os>
  <features><acpi/><tcg><tb-cache unit='MiB'>16</tb-cache></tcg></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    {ports}
    {"".join(disks)}
    <serial type='pty'><log file='{serial_log_path(n)}' append='off'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'><listen type='address' address='127.0.0.1'/></graphics>
    <video><model type='vga'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


@pytest.fixture(scope="module")
def media_lab(make_base_dir, port_base_for) -> Iterator[lab.LabHost]:
    """A lab of its own (1 real host, no guests of its own): these tests define and remove domains."""
    base = make_base_dir("lab-media")
    try:
        state = lab.up(base, hosts=1, guests_per_host=0, port_base=port_base_for(1, 0))
        yield state.real_hosts[0]
    finally:
        lab.down(base)


@pytest.fixture
def guest_env(media_lab: lab.LabHost) -> Iterator[tuple[lab.LabHost, libvirt.virConnect, Pool, list[str]]]:
    """(host, connection, pool, names): every domain named in `names` is destroyed and undefined, and
    every volume made in `pool` deleted, whatever the test did."""
    conn = libvirt.open(media_lab.uri)
    pool = Pool(conn)
    names: list[str] = []
    try:
        yield media_lab, conn, pool, names
    finally:
        for name in names:
            try:
                dom = conn.lookupByName(name)
            except libvirt.libvirtError:
                continue
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        pool.delete_all()
        conn.close()


def needs_ahci(lab_images: Path) -> None:
    """Skip unless the lab kernel has its (source-built) AHCI driver: q35's SATA disks and CD-ROMs."""
    if "ahci" not in json.loads((lab_images / "kernel.json").read_text())["modules"]:
        pytest.fail(
            "the lab kernel was prepared without its AHCI driver (SATA is not seen): ./virtfleet setup "
            "installs make, gcc-12, libelf1 and xz-utils to build it; see `python -m lab prepare --force`"
        )


def _start(conn: libvirt.virConnect, names: list[str], xml: str) -> libvirt.virDomain:
    dom = conn.defineXML(xml)
    names.append(dom.name())
    dom.create()
    return dom


def test_the_lab_pool_holds_the_boot_iso_the_disk_and_the_cloud_image(media_lab: lab.LabHost, lab_images) -> None:
    conn = libvirt.open(media_lab.uri)
    try:
        pool = conn.storagePoolLookupByName(LAB_POOL)
        pool.refresh(0)
        assert {"lab-boot.iso", QCOW2_NAME, CLOUD_NAME} <= set(pool.listVolumes())
        vol = pool.storageVolLookupByName(CLOUD_NAME)
        assert vol.path() == f"{LAB_POOL_PATH}/{CLOUD_NAME}"  # the same path on every lab host
        assert "<format type='qcow2'/>" in vol.XMLDesc(0)
    finally:
        conn.close()
    copy = Path(media_lab.dir) / "lib" / "images" / CLOUD_NAME
    assert copy.read_bytes() == (lab_images / CLOUD_NAME).read_bytes()


@pytest.mark.parametrize("machine", ["pc", "q35"])
def test_disk_booted_guest_sees_its_disk_and_hot_plugged_virtio_and_scsi_disks(guest_env, machine: str) -> None:
    host, conn, pool, names = guest_env
    name = f"media-disk-{machine}"
    boot = pool.overlay(QCOW2_NAME)
    disks = [disk_xml(boot, "vda", "virtio", fmt="qcow2", boot=True), VIRTIO_SCSI]
    dom = _start(conn, names, domain_xml(name, machine, disks))
    lab.wait_guest_ready(host, name, timeout=BOOT_TIMEOUT)
    prefix = f"virtfleet lab guest {name}: disk"
    m = lab.wait_guest_serial(host, name, rf"{prefix} vda appeared \(32 MiB\)", EVENT_TIMEOUT)

    virtio = disk_xml(pool.raw(mib=64), "vdb", "virtio")
    dom.attachDeviceFlags(virtio, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    m = lab.wait_guest_serial(host, name, rf"{prefix} vdb appeared \(64 MiB\)", EVENT_TIMEOUT, start=m.end())
    dom.blockResize("vdb", 96 * 1024 * 1024, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
    m = lab.wait_guest_serial(host, name, rf"{prefix} vdb changed \(96 MiB\)", EVENT_TIMEOUT, start=m.end())
    scsi = disk_xml(pool.raw(mib=16), "sda", "scsi")
    dom.attachDeviceFlags(scsi, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    m = lab.wait_guest_serial(host, name, rf"{prefix} sda appeared \(16 MiB\)", EVENT_TIMEOUT, start=m.end())

    for xml, target in ((virtio, "vdb"), (scsi, "sda")):
        dom.detachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        m = lab.wait_guest_serial(host, name, rf"{prefix} {target} removed", EVENT_TIMEOUT, start=m.end())
    # libvirt drops a disk from the live XML once QEMU reports it gone (the guest let go of it)
    deadline = time.monotonic() + EVENT_TIMEOUT
    while "test-media-" in dom.XMLDesc(0).replace(boot, ""):
        assert time.monotonic() < deadline, "a detached disk is still in the domain"
        time.sleep(0.2)
    assert lab.guest_disk_events(host, name) == [
        ("vda", "appeared", "32 MiB"),
        ("vdb", "appeared", "64 MiB"),
        ("vdb", "changed", "96 MiB"),
        ("sda", "appeared", "16 MiB"),
        ("vdb", "removed", ""),
        ("sda", "removed", ""),
    ]


@pytest.mark.parametrize(
    ("machine", "bus", "target"),
    [("q35", "sata", "sda"), ("pc", "ide", "hdc"), ("q35", "scsi", "sda")],
    ids=["q35-sata-cdrom", "pc-ide-cdrom", "q35-virtio-scsi-cdrom"],
)
def test_cloud_image_reads_a_nocloud_iso_on_a_cdrom(guest_env, lab_images, machine: str, bus: str, target: str) -> None:
    if bus == "sata":
        needs_ahci(lab_images)
    host, conn, pool, names = guest_env
    name = f"media-cloud-{machine}-{bus}"
    boot = pool.overlay(CLOUD_NAME)
    seed = pool.raw(data=nocloud_iso("instance-id: iid-web1\nlocal-hostname: web1-meta\n", USER_DATA, "version: 2\n"))
    disks = [disk_xml(boot, "vda", "virtio", fmt="qcow2", boot=True), disk_xml(seed, target, bus, cdrom=True)]
    if bus == "scsi":  # what Virtfleet gives a new VM's seed: a CD-ROM on virtio-scsi
        disks.append(VIRTIO_SCSI)
    # no SMBIOS name, as in a VM Virtfleet creates: the seed alone names the guest
    _start(conn, names, domain_xml(name, machine, disks, smbios_name=False))
    lab.wait_guest_ready(host, name, timeout=BOOT_TIMEOUT, hostname="web1")
    text = lab.guest_serial_text(host, name)
    line = (
        "virtfleet lab cloud-init: instance-id=iid-web1 hostname=web1 user=alice password=yes ssh-keys=2 "
        "network-config=yes"
    )
    assert text.count(line) == 1, text[-1500:]
    assert text.index(line) < text.index("virtfleet lab guest web1 ready")
    assert lab.guest_cloud_init(host, name) == {
        "instance_id": "iid-web1",
        "hostname": "web1",
        "user": "alice",
        "password": "yes",
        "ssh_keys": "2",
        "network_config": "yes",
    }
    # the seed's CD-ROM is one of the guest's disks, announced as such
    lab.wait_guest_serial(host, name, r"virtfleet lab guest web1: disk sr0 appeared \([0-9]+ KiB, cdrom\)", 30)


def test_cloud_image_reads_a_vfat_seed_on_a_virtio_disk(guest_env, tmp_path: Path) -> None:
    host, conn, pool, names = guest_env
    name = "media-cloud-virtio"
    boot = pool.overlay(CLOUD_NAME)
    user_data = "#cloud-config\nfqdn: db7.example.com\nusers:\n- default\nssh_authorized_keys:\n- k1\n"
    seed = pool.raw(data=nocloud_vfat(tmp_path, "instance-id: 'iid-db7'\n", user_data))
    disks = [disk_xml(boot, "vda", "virtio", fmt="qcow2", boot=True), disk_xml(seed, "vdb", "virtio")]
    _start(conn, names, domain_xml(name, "pc", disks))
    lab.wait_guest_ready(host, name, timeout=BOOT_TIMEOUT, hostname="db7")
    assert lab.guest_cloud_init(host, name) == {
        "instance_id": "iid-db7",
        "hostname": "db7",
        "user": "default",
        "password": "no",
        "ssh_keys": "1",
        "network_config": "no",
    }


def test_cloud_image_without_a_seed_says_so_and_keeps_its_name(guest_env, lab_images) -> None:
    needs_ahci(lab_images)
    host, conn, pool, names = guest_env
    name = "media-cloud-noseed"
    boot = pool.overlay(CLOUD_NAME)
    _start(conn, names, domain_xml(name, "q35", [disk_xml(boot, "sda", "sata", fmt="qcow2", boot=True)]))
    lab.wait_guest_ready(host, name, timeout=BOOT_TIMEOUT + 10)  # it waits 10 s for a seed first
    text = lab.guest_serial_text(host, name)
    assert text.count(CLOUD_NO_SEED) == 1
    assert text.index(CLOUD_NO_SEED) < text.index(f"virtfleet lab guest {name} ready")
    assert lab.guest_cloud_init(host, name) == {}
    # booted from a SATA disk: the AHCI driver (built for this kernel) sees it
    lab.wait_guest_serial(host, name, rf"virtfleet lab guest {name}: disk sda appeared \(32 MiB\)", EVENT_TIMEOUT)


def test_parser_reads_what_virt_seed_builds(tmp_path: Path) -> None:
    from virt import seed

    ci = seed.CloudInit(hostname="web9", user="alice", password_hash=seed.hash_password("pw"),
                        ssh_keys=("ssh-ed25519 AAAAC3Nza alice@x",), instance_id="iid-9")  # fmt: skip
    got = _parse(tmp_path, seed.meta_data(ci), seed.build_user_data(ci))
    assert {k: got[k] for k in ("instance_id", "hostname", "user", "password", "ssh_keys")} == {
        "instance_id": "iid-9", "hostname": "web9", "user": "alice", "password": "yes", "ssh_keys": "1",
    }  # fmt: skip


def test_parser_reads_what_virt_seed_builds_beside_a_script(tmp_path: Path) -> None:
    from virt import seed

    ci = seed.CloudInit(hostname="job3.example.com", user="bob", ssh_keys=("k1", "k2"), instance_id="iid-3",
                        user_data="#!/bin/sh\necho hello\n")  # fmt: skip
    user_data = seed.build_user_data(ci)
    assert not user_data.startswith("#cloud-config")  # a MIME multipart
    got = _parse(tmp_path, seed.meta_data(ci), user_data)
    assert {k: got[k] for k in ("instance_id", "hostname", "user", "password", "ssh_keys")} == {
        "instance_id": "iid-3", "hostname": "job3", "user": "bob", "password": "no", "ssh_keys": "2",
    }  # fmt: skip
