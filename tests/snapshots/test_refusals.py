"""What virt.snapshots.refusal says cannot be done safely, from a domain's XML, its snapshots and the
host's libvirt version (the lab runs 9.0: no revert or delete of external snapshots there), and the
snapshot XML Virtfleet sends (escaped, CD-ROMs and read-only disks left out)."""

from __future__ import annotations

from defusedxml.ElementTree import fromstring

from virt import snapshots as vs

LAB = "9.0.0"  # measured on the lab's hosts (Debian 12)
NEW = "10.10.0"

QCOW2_VM = """<domain type='qemu'><name>t-snap</name><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/t-snap.qcow2'/><target dev='vda' bus='virtio'/></disk>
  <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/var/lib/libvirt/images/lab-boot.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/srv/shared.qcow2'/><target dev='vdc' bus='virtio'/><shareable/></disk>
</devices></domain>"""
RAW_VM = """<domain type='qemu'><name>r</name><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/a.qcow2'/><target dev='vda' bus='virtio'/></disk>
  <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/i/data.img'/><target dev='vdb' bus='virtio'/></disk>
</devices></domain>"""
UEFI_VM = """<domain type='qemu'><name>u</name><os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader><nvram>/var/lib/libvirt/qemu/nvram/u_VARS.fd</nvram></os>
  <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/u.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>"""
AGENT_VM = QCOW2_VM.replace("</devices>", "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' "
                                          "state='connected'/></channel></devices>")  # fmt: skip
AGENT_DOWN_VM = AGENT_VM.replace("state='connected'", "state='disconnected'")

# as libvirt 9.0 prints them (virsh snapshot-dumpxml on the lab, the <domain> part left out)
INTERNAL_XML = """<domainsnapshot><name>s1</name><description>before &lt;upgrade&gt;</description><state>running</state>
  <creationTime>1717171717</creationTime><memory snapshot='internal'/>
  <disks><disk name='vda' snapshot='internal'/><disk name='sda' snapshot='no'/></disks></domainsnapshot>"""
EXTERNAL_XML = """<domainsnapshot><name>ext1</name><state>disk-snapshot</state><parent><name>s1</name></parent>
  <creationTime>1717171800</creationTime><memory snapshot='no'/>
  <disks><disk name='vda' snapshot='external' type='file'><driver type='qcow2'/>
  <source file='/var/lib/libvirt/images/t-snap.ext1'/></disk><disk name='sda' snapshot='no'/></disks></domainsnapshot>"""


def snaps(*xmls: str, current: str = "") -> list[vs.SnapshotInfo]:
    found = []
    for xml in xmls:
        info = vs.snapshot_from_xml(xml)
        found.append(vs.snapshot_from_xml(xml, current=info.name == current))
    return found


def refuse(action="create", version=LAB, xml=QCOW2_VM, state="running", existing=(), **kwargs) -> str:
    return vs.refusal(action=action, libvirt_version=version, domain_xml=xml, state=state, snapshots=list(existing),
                      **kwargs)  # fmt: skip


def test_snapshot_xml_is_read_into_its_parts():
    internal, external = snaps(INTERNAL_XML, EXTERNAL_XML, current="ext1")
    assert (internal.name, internal.parent, internal.description, internal.state) == ("s1", "", "before <upgrade>",
                                                                                     "running")  # fmt: skip
    assert internal.memory == "internal" and not internal.external and internal.created == 1717171717
    assert [(d.name, d.mode) for d in internal.disks] == [("vda", "internal"), ("sda", "no")]
    assert external.external and external.disk_only and external.parent == "s1" and external.current
    assert external.disks[0].file == "/var/lib/libvirt/images/t-snap.ext1"


def test_an_internal_snapshot_of_a_running_qcow2_vm_is_allowed_on_the_lab():
    assert refuse(request=vs.Request(name="s2")) == ""
    assert refuse(state="shutoff", request=vs.Request(name="s2", memory=False)) == ""


def test_a_running_vm_internal_snapshot_always_holds_its_memory():
    why = refuse(request=vs.Request(name="s2", memory=False))
    assert "always holds its memory" in why and "disk-only" in why


def test_a_raw_disk_cannot_hold_internal_snapshots_and_is_named():
    why = refuse(xml=RAW_VM, request=vs.Request(name="s"))
    assert "disk vdb (/i/data.img) is raw" in why and "only qcow2" in why and "disk-only" in why
    assert refuse(xml=RAW_VM, version=NEW, request=vs.Request(name="s", disk_only=True)) == ""


def test_disk_only_is_refused_on_the_lab_because_libvirt_9_0_could_not_revert_or_delete_it():
    why = refuse(request=vs.Request(name="d", disk_only=True))
    assert "could neither revert it (needs ≥ 9.9.0) nor delete it (needs ≥ 9.7.0)" in why and "9.0.0" in why
    assert refuse(version=NEW, request=vs.Request(name="d", disk_only=True)) == ""


def test_internal_and_external_snapshots_never_mix_on_one_disk():
    internal, external = snaps(INTERNAL_XML, EXTERNAL_XML)
    why = refuse(version=NEW, existing=[internal], request=vs.Request(name="d", disk_only=True))
    assert "vda already holds internal snapshots" in why and "mixing" in why
    why = refuse(version=NEW, existing=[external], request=vs.Request(name="i"))
    assert "vda already has external snapshots" in why


def test_reverting_an_external_snapshot_needs_libvirt_9_9():
    existing = snaps(INTERNAL_XML, EXTERNAL_XML)
    why = refuse("revert", existing=existing, name="ext1")
    assert why == "ext1 is an external snapshot and reverting one needs libvirt ≥ 9.9.0; this host runs 9.0.0"
    assert refuse("revert", version="9.9.0", existing=existing, name="ext1") == ""
    assert refuse("revert", existing=existing, name="s1") == ""
    assert refuse("revert", existing=existing, name="nope") == "it has no snapshot named nope"


def test_deleting_an_external_snapshot_needs_9_7_and_never_with_an_internal_parent():
    existing = snaps(INTERNAL_XML, EXTERNAL_XML)
    why = refuse("delete", existing=existing, name="ext1")
    assert "deleting one needs libvirt ≥ 9.7.0" in why and "never drops only its metadata" in why
    assert "parent s1 is internal" in refuse("delete", version=NEW, existing=existing, name="ext1")
    # a subtree with an external snapshot in it: refused when its children go too
    assert refuse("delete", existing=existing, name="s1") == ""
    assert "ext1 (in its subtree) is an external snapshot" in refuse("delete", existing=existing, name="s1",
                                                                      children=True)  # fmt: skip


def test_uefi_pflash_vms_get_internal_snapshots_from_libvirt_10_9():
    why = refuse(xml=UEFI_VM, request=vs.Request(name="s"))
    assert "UEFI from pflash" in why and "10.9.0" in why and "9.0.0" in why
    assert refuse(xml=UEFI_VM, version="10.9.0", request=vs.Request(name="s")) == ""
    existing = snaps(INTERNAL_XML)
    assert "10.9.0" in refuse("revert", xml=UEFI_VM, existing=existing, name="s1")


def test_quiesce_needs_a_connected_agent_and_disk_only():
    assert refuse(xml=AGENT_VM, version=NEW, request=vs.Request(name="q", disk_only=True, quiesce=True)) == ""
    why = refuse(xml=AGENT_DOWN_VM, version=NEW, request=vs.Request(name="q", disk_only=True, quiesce=True))
    assert "connected QEMU guest agent" in why
    assert vs.quiesce_note(AGENT_VM).startswith("the guest agent is connected")
    assert "no agent answers" in vs.quiesce_note(AGENT_DOWN_VM)
    assert "no guest agent channel" in vs.quiesce_note(QCOW2_VM)
    flags = vs.create_flags(vs.Request(name="q", disk_only=True, quiesce=True), state="running")
    import libvirt

    assert flags & libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE and flags & libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
    assert not vs.create_flags(vs.Request(name="i"), state="running") & libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE


def test_a_duplicate_name_is_refused():
    assert refuse(existing=snaps(INTERNAL_XML), request=vs.Request(name="s1")) == "it already has a snapshot named s1"


def test_read_only_cdrom_and_shared_disks_are_left_out_not_refused():
    xml = vs.snapshot_xml(vs.Request(name="a<b", description="x & 'y' </description>"), domain_xml=QCOW2_VM,
                          state="running")  # fmt: skip
    root = fromstring(xml)
    assert root.findtext("name") == "a<b" and root.findtext("description") == "x & 'y' </description>"
    assert root.find("memory").get("snapshot") == "internal"
    assert {d.get("name"): d.get("snapshot") for d in root.findall("./disks/disk")} == {
        "vda": "internal", "sda": "no", "vdc": "no"}  # fmt: skip
    disk_only = fromstring(vs.snapshot_xml(vs.Request(name="d", disk_only=True), domain_xml=QCOW2_VM, state="running"))
    assert disk_only.find("memory") is None
    assert {d.get("name"): d.get("snapshot") for d in disk_only.findall("./disks/disk")}["vda"] == "external"


def test_versions_are_read_in_every_shape():
    assert vs.parse_version("9.0.0") == (9, 0, 0) == vs.parse_version(9000000)
    assert vs.parse_version("10.10.0") > vs.parse_version("9.9.0")
    assert vs.parse_version("") == (0, 0, 0)
