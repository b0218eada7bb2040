"""A clone's XML (virt.clone): nothing that must be its own is shared with the source, and
everything else is kept, checked on an XML Virtfleet's builder makes and on a hand-written one."""

from __future__ import annotations

import pytest

from virt import builder as vb
from virt.clone import TEMPLATE_NS, NewSource, clone_name, clone_plan, clone_xml
from virt.domains import domain_disks, domain_interfaces, parse_xml
from virt.errors import OperationInvalid

SOURCE = f"""<domain type='qemu'>
  <name>web1</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
  <metadata><vf:template xmlns:vf='{TEMPLATE_NS}'/><other xmlns='urn:x'/></metadata>
  <memory unit='MiB'>128</memory><vcpu>1</vcpu>
  <sysinfo type='smbios'><system><entry name='uuid'>11111111-2222-3333-4444-555555555555</entry>
    <entry name='product'>web1</entry></system></sysinfo>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/web1_VARS.fd</nvram></os>
  <devices>
    <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='lab' volume='web1.qcow2'/>
      <backingStore type='file'><source file='/base.qcow2'/></backingStore><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/data/web1-data.raw'/>
      <target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='/data/shared.raw'/><target dev='vdc' bus='virtio'/><shareable/></disk>
    <disk type='file' device='cdrom'><source file='/iso/boot.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
    <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='lab'/><model type='virtio'/></interface>
    <interface type='network'><source network='lab'/></interface>
    <serial type='pty'><log file='/var/log/libvirt/qemu/web1.serial.log' append='off'/><target port='0'/></serial>
    <channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/web1.org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <graphics type='vnc' port='5901' autoport='no' listen='127.0.0.1' passwd='secret123'/>
  </devices>
</domain>"""
NEW = "99999999-8888-7777-6666-555555555555"


def test_plan_copies_writable_disks_and_shares_the_rest():
    plan = {c.target: c for c in clone_plan(SOURCE)}
    assert [t for t, c in plan.items() if c.action == "copy"] == ["vda", "vdb"]
    assert plan["vdc"].action == "share" and "shareable" in plan["vdc"].why
    assert plan["sda"].action == "share" and "cdrom" in plan["sda"].why


def test_clone_has_its_own_identity_disks_macs_nvram_and_log():
    xml = clone_xml(SOURCE, name="web1-clone", uuid=NEW, disks={"vda": NewSource("/pool/web1-clone.qcow2", "qcow2"),
                                                                 "vdb": NewSource("/pool/web1-clone-data.raw")},
                    macs={"52:54:00:aa:bb:cc": "52:54:00:11:22:33"})  # fmt: skip
    root = parse_xml(xml)
    assert root.findtext("name") == "web1-clone" and root.findtext("uuid") == NEW
    assert root.find("./sysinfo/system/entry[@name='uuid']").text == NEW
    assert root.find(f"./metadata/{{{TEMPLATE_NS}}}template") is None
    assert root.find("./metadata/{urn:x}other") is not None
    nvram = root.find("./os/nvram")
    assert nvram is not None and not (nvram.text or "").strip() and nvram.get("template")
    disks = {d.target: d for d in domain_disks(xml)}
    assert disks["vda"].path == "/pool/web1-clone.qcow2" and disks["vda"].source_type == "file"
    assert disks["vda"].format == "qcow2"
    assert root.find("./devices/disk/backingStore") is None
    assert disks["vdb"].path == "/pool/web1-clone-data.raw" and disks["vdb"].format == "raw"
    assert disks["vdc"].path == "/data/shared.raw" and disks["sda"].path == "/iso/boot.iso"
    macs = [i.mac for i in domain_interfaces(xml)]
    assert macs[0] == "52:54:00:11:22:33" and macs[1].startswith("52:54:00:") and len(set(macs)) == 2
    assert root.find("./devices/serial/log").get("file") == "/var/log/libvirt/qemu/web1-clone.serial.log"
    assert root.find("./devices/channel/source").get("path") is None
    graphics = root.find("./devices/graphics")
    assert graphics.get("autoport") == "yes" and graphics.get("port") is None
    assert graphics.get("passwd") and graphics.get("passwd") != "secret123"


def test_a_writable_disk_without_new_storage_is_refused():
    with pytest.raises(OperationInvalid, match="vdb"):
        clone_xml(SOURCE, name="c", uuid=NEW, disks={"vda": NewSource("/x.qcow2")})


def test_builder_xml_clones_and_libvirt_defines_both():
    import libvirt

    spec = vb.DomainSpec(name="src", uuid=vb.new_uuid(), memory_mib=128, vcpus=1, virttype="test", machine="",
                         disks=(vb.DiskSpec(path="/pool/src.qcow2", format="qcow2"),),
                         nics=(vb.NicSpec(source="default", mac=vb.new_mac()),), vnc_password="abcdefgh",
                         serial_log="/var/log/libvirt/qemu/src.serial.log")  # fmt: skip
    source = vb.domain_xml(spec)
    xml = clone_xml(source, name="src-clone", uuid=NEW, disks={"vda": NewSource("/pool/src-clone.qcow2")})
    assert domain_disks(xml)[0].path == "/pool/src-clone.qcow2"
    assert domain_interfaces(xml)[0].mac != spec.nics[0].mac
    conn = libvirt.open("test:///default")
    try:
        conn.defineXML(source)
        clone = conn.defineXML(xml)
        assert clone.UUIDString() == NEW and clone.name() == "src-clone"
        assert "/pool/src-clone.qcow2" in clone.XMLDesc(0) and "src-clone.serial.log" in clone.XMLDesc(0)
    finally:
        conn.close()


def test_auto_clone_names():
    assert clone_name("web", set()) == "web-clone"
    assert clone_name("web", {"web-clone", "web-clone1"}) == "web-clone2"


def test_the_template_mark_is_read_from_metadata():
    from virt.domains import domain_info_from_xml

    marked = domain_info_from_xml(SOURCE, state=5, reason=0, persistent=True, autostart=False, managed_save=False)
    assert marked.template
    clone = clone_xml(SOURCE, name="c", uuid=NEW, disks={"vda": NewSource("/a"), "vdb": NewSource("/b")})
    assert not domain_info_from_xml(
        clone, state=5, reason=0, persistent=True, autostart=False, managed_save=False
    ).template
