import json

import libvirt
import pytest

from tests.helpers import DATA
from virt import HostUnreachable, open_connection
from virt.capabilities import (
    DomainCapabilities,
    HostCapabilities,
    capabilities_from_xml,
    domain_capabilities_from_xml,
    domain_capability_queries,
    host_capabilities,
    machine_family,
)

CAPS = (DATA / "caps-lab.xml").read_text()
# the same host with AMD-V, as a real KVM host has (the lab's CPU has neither vmx nor svm)
CAPS_VT = CAPS.replace("<feature name='vme'/>", "<feature name='vme'/><feature name='svm'/>", 1)
Q35 = (DATA / "domcaps-q35.xml").read_text()
PC = (DATA / "domcaps-pc.xml").read_text()

AARCH64 = """<domainCapabilities>
  <path>/usr/bin/qemu-system-aarch64</path><domain>qemu</domain><machine>virt-7.2</machine><arch>aarch64</arch>
  <vcpu max='512'/>
  <os supported='yes'>
    <enum name='firmware'/>
    <loader supported='yes'>
      <value>/usr/share/AAVMF/AAVMF_CODE.fd</value><value>/usr/share/AAVMF/AAVMF_CODE.ms.fd</value>
      <enum name='type'><value>rom</value><value>pflash</value></enum>
      <enum name='secure'><value>yes</value><value>no</value></enum>
    </loader>
  </os>
  <devices>
    <disk supported='yes'><enum name='bus'><value>virtio</value><value>scsi</value></enum></disk>
    <graphics supported='yes'><enum name='type'><value>vnc</value></enum></graphics>
    <hostdev supported='no'/>
  </devices>
  <features><gic supported='yes'><enum name='version'><value>3</value></enum></gic><sev supported='no'/></features>
</domainCapabilities>"""


def lab() -> HostCapabilities:
    return capabilities_from_xml(CAPS, [PC, Q35])


def as_kvm(xml: str) -> str:
    return xml.replace("<domain>qemu</domain>", "<domain>kvm</domain>")


# --- parsing the lab's answers ------------------------------------------------------------------------
def test_guests_of_the_lab_host():
    caps = lab()
    assert caps.host_arch == "x86_64"
    assert [(g.arch, g.os_type, g.domain_types) for g in caps.guests] == [
        ("i686", "hvm", ("qemu", "kvm")),
        ("x86_64", "hvm", ("qemu", "kvm")),
    ]
    x86 = caps.guests[1]
    assert x86.emulator == "/usr/bin/qemu-system-x86_64"
    assert len(x86.machines) == 60
    pc, q35 = x86.machine("pc"), x86.machine("q35")
    assert pc is not None and q35 is not None
    assert (pc.canonical, pc.max_cpus, pc.is_alias) == ("pc-i440fx-7.2", 255, True)
    assert (q35.canonical, q35.max_cpus) == ("pc-q35-7.2", 288)
    old = x86.machine("pc-i440fx-1.5")
    assert old is not None and old.deprecated and old.canonical == "pc-i440fx-1.5" and not old.is_alias
    assert not x86.machine("pc-q35-7.2").deprecated
    assert caps.canonical_machine("x86_64", "q35") == "pc-q35-7.2"
    assert caps.canonical_machine("x86_64", "pc-q35-6.1") == "pc-q35-6.1"


def test_q35_domain_capabilities():
    d = domain_capabilities_from_xml(Q35)
    assert (d.arch, d.virttype, d.machine, d.emulator, d.max_vcpus) == (
        "x86_64", "qemu", "pc-q35-7.2", "/usr/bin/qemu-system-x86_64", 288,
    )  # fmt: skip
    assert d.firmware == ("bios", "efi")  # BIOS is implicit: the firmware enum lists only efi
    assert d.secure_boot
    assert d.loaders == (
        "/usr/share/OVMF/OVMF_CODE_4M.ms.fd",
        "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
    )
    assert d.disk_buses == ("fdc", "scsi", "virtio", "usb", "sata")  # q35 has no IDE
    assert d.disk_devices == ("disk", "cdrom", "floppy", "lun")
    assert d.graphics == ("sdl", "vnc", "spice", "egl-headless", "dbus")
    assert "virtio" in d.video_models and "qxl" in d.video_models
    assert d.hostdev
    assert d.features == ("vmcoreinfo", "genid", "backingStoreInput", "backup", "hyperv")
    assert "sev" not in d.features and "gic" not in d.features
    assert d.cpu_modes == ("maximum", "host-model", "custom")  # TCG: no host-passthrough
    assert d.tpm_models == ("tpm-tis", "tpm-crb")
    assert d.rng_models[0] == "virtio"


def test_pc_has_ide_and_no_secure_boot():
    d = domain_capabilities_from_xml(PC)
    assert d.machine == "pc-i440fx-7.2" and d.max_vcpus == 255
    assert "ide" in d.disk_buses
    assert d.firmware == ("bios", "efi")
    assert not d.secure_boot
    assert d.loaders == ("/usr/share/OVMF/OVMF_CODE_4M.fd",)


def test_secure_boot_on_x86_needs_q35_even_with_a_secure_loader():
    i440fx_with_secure = Q35.replace("pc-q35-7.2", "pc-i440fx-7.2")
    assert not domain_capabilities_from_xml(i440fx_with_secure).secure_boot


def test_no_usable_firmware_leaves_bios_alone():
    xml = Q35.replace("<os supported='yes'>", "<os supported='no'>")
    d = domain_capabilities_from_xml(xml)
    assert d.firmware == ("bios",) and not d.secure_boot and d.loaders == ()


def test_a_loader_alone_means_efi():
    xml = Q35.replace("<enum name='firmware'>\n      <value>efi</value>\n    </enum>", "")
    assert "enum name='firmware'" not in xml
    assert domain_capabilities_from_xml(xml).firmware == ("bios", "efi")


def test_other_arches_have_no_bios_and_secure_boot_without_smm():
    d = domain_capabilities_from_xml(AARCH64)
    assert d.firmware == ("efi",)
    assert d.secure_boot
    assert d.features == ("gic",)
    assert not d.hostdev
    assert d.disk_devices == () and d.video_models == () and d.cpu_modes == ()


def test_machine_families():
    assert machine_family("pc-q35-7.2") == machine_family("pc-q35-5.2") == "pc-q35"
    assert machine_family("pc-i440fx-rhel7.6.0") == "pc-i440fx"
    assert machine_family("virt-8.0") == "virt"
    assert machine_family("q35") == "q35"


# --- lookups ------------------------------------------------------------------------------------------------
def test_domain_by_alias_canonical_name_or_family():
    caps = lab()
    assert caps.domain(arch="x86_64", machine="q35").machine == "pc-q35-7.2"
    assert caps.domain(arch="x86_64", machine="pc-q35-7.2").machine == "pc-q35-7.2"
    assert caps.domain(arch="x86_64", machine="pc").machine == "pc-i440fx-7.2"
    assert caps.domain(arch="x86_64", machine="pc-q35-5.2").machine == "pc-q35-7.2"  # an older version
    assert caps.domain(arch="x86_64").machine == "pc-i440fx-7.2"  # libvirt's default comes first
    assert caps.domain(arch="x86_64", machine="microvm") is None
    assert caps.domain(arch="aarch64") is None
    assert caps.domain(arch="x86_64", virttype="kvm") is None
    assert caps.domain(arch="x86_64", virttype="qemu", machine="q35").virttype == "qemu"


def test_what_the_form_may_offer():
    caps = lab()
    assert caps.reported
    assert caps.arches() == ["x86_64"]  # only arches with domain capabilities
    assert caps.virttypes("x86_64") == ["qemu"]  # the capabilities list kvm, but none was read for it
    assert caps.machines("x86_64") == ["pc", "q35"]
    assert caps.virttypes("i686") == [] and caps.machines("i686") == []


def test_kvm_comes_first():
    caps = capabilities_from_xml(CAPS_VT, [PC, Q35, as_kvm(Q35), as_kvm(PC)])
    assert caps.virttypes("x86_64") == ["kvm", "qemu"]
    assert caps.domain(arch="x86_64", machine="q35").virttype == "kvm"
    assert caps.domain(arch="x86_64").virttype == "kvm"
    assert caps.domain(arch="x86_64", machine="q35", virttype="qemu").virttype == "qemu"
    assert caps.machines("x86_64", "kvm") == ["q35", "pc"]


def test_without_domain_capabilities_the_guests_decide():
    caps = capabilities_from_xml(CAPS_VT, [])
    assert not caps.reported and caps.domains == ()
    assert caps.arches() == ["x86_64", "i686"]  # the host's own first
    assert caps.virttypes("x86_64") == ["kvm", "qemu"]
    assert caps.machines("x86_64") == ["pc", "q35"]
    assert caps.domain(arch="x86_64") is None


# --- storing ------------------------------------------------------------------------------------------------
def test_to_dict_is_json_and_comes_back_equal():
    caps = capabilities_from_xml(CAPS, [PC, Q35, AARCH64])
    stored = json.loads(json.dumps(caps.to_dict()))
    assert HostCapabilities.from_dict(stored) == caps
    d = caps.domains[1]
    assert DomainCapabilities.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    assert stored["domains"][1]["firmware"] == ["bios", "efi"]
    assert stored["guests"][1]["machines"][0] == {
        "name": "pc-i440fx-7.2", "canonical": "pc-i440fx-7.2", "max_cpus": 255, "deprecated": False,
    }  # fmt: skip


def test_from_dict_reads_what_an_older_or_newer_version_stored():
    d = DomainCapabilities.from_dict({"arch": "x86_64", "virttype": "kvm", "machine": "pc-q35-7.2",
                                      "firmware": ["bios"], "some_future_field": [1]})  # fmt: skip
    assert d.arch == "x86_64" and d.firmware == ("bios",) and d.tpm_models == () and not d.secure_boot
    empty = HostCapabilities.from_dict({})
    assert empty == HostCapabilities(guests=(), domains=(), reported=False)
    with pytest.raises(ValueError):
        DomainCapabilities.from_dict(["x86_64"])  # type: ignore[arg-type]


# --- reading from a host ------------------------------------------------------------------------------------
def test_domain_capability_queries_of_the_lab_host():
    queries = domain_capability_queries(CAPS)
    x86 = "/usr/bin/qemu-system-x86_64"
    assert (x86, "x86_64", "pc", "qemu") in queries and (x86, "x86_64", "q35", "kvm") in queries
    assert ("/usr/bin/qemu-system-i386", "i686", "q35", "qemu") in queries
    assert len(queries) == 8  # 2 arches x 2 virttypes x (pc, q35)


def test_other_arches_are_asked_for_their_default_machine():
    caps = CAPS.replace("<arch name='i686'>", "<arch name='aarch64'>").replace(
        "/usr/bin/qemu-system-i386", "/usr/bin/qemu-system-aarch64"
    )
    assert ("/usr/bin/qemu-system-aarch64", "aarch64", "", "qemu") in domain_capability_queries(caps)


def test_the_test_driver_reports_guests_but_no_domain_capabilities():
    caps = host_capabilities(open_connection("test:///default"))
    assert not caps.reported and caps.domains == ()
    assert {(g.arch, g.os_type) for g in caps.guests} == {("i686", "hvm"), ("i686", "xen")}
    assert caps.arches() == ["i686"]
    assert caps.virttypes("i686") == ["test"]


def libvirt_error(code: int, message: str, domain: int = libvirt.VIR_FROM_QEMU) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)
    return exc


class FakeRaw:
    """A host whose capabilities are the lab's, kvm unusable (no /dev/kvm)."""

    def __init__(self, failure: libvirt.libvirtError | None = None):
        self.calls: list[tuple] = []
        self.failure = failure

    def getCapabilities(self):
        return CAPS

    def getDomainCapabilities(self, emulator, arch, machine, virttype, flags):
        self.calls.append((emulator, arch, machine, virttype))
        if self.failure is not None:
            raise self.failure
        if virttype == "kvm":
            raise libvirt_error(libvirt.VIR_ERR_CONFIG_UNSUPPORTED, "KVM is not supported on this host")
        if arch != "x86_64":
            raise libvirt_error(libvirt.VIR_ERR_INVALID_ARG, "no emulator")
        return {"pc": PC, "q35": Q35}[machine]


class FakeConn:
    uri = "qemu+tcp://lab/system"

    def __init__(self, raw: FakeRaw):
        self.raw = raw


def test_combinations_the_host_refuses_are_left_out():
    raw = FakeRaw()
    caps = host_capabilities(FakeConn(raw))
    assert caps == lab()
    assert len(raw.calls) == 8 and ("/usr/bin/qemu-system-x86_64", "x86_64", "q35", "qemu") in raw.calls
    assert caps.virttypes("x86_64") == ["qemu"]


@pytest.mark.parametrize(
    "failure",
    [
        libvirt_error(libvirt.VIR_ERR_NO_SUPPORT, "this function is not supported by the connection driver"),
        libvirt_error(libvirt.VIR_ERR_OPERATION_DENIED, "read only access prevents virConnectGetDomainCapabilities"),
    ],
)
def test_a_driver_without_domain_capabilities_is_asked_once(failure):
    raw = FakeRaw(failure)
    caps = host_capabilities(FakeConn(raw))
    assert len(raw.calls) == 1
    assert not caps.reported and len(caps.guests) == 2


def test_a_lost_connection_is_raised():
    raw = FakeRaw(libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "Cannot recv data", libvirt.VIR_FROM_RPC))
    with pytest.raises(HostUnreachable):
        host_capabilities(FakeConn(raw))


def test_unreadable_capabilities_are_raised():
    class Down(FakeRaw):
        def getCapabilities(self):
            raise libvirt_error(libvirt.VIR_ERR_NO_CONNECT, "no connection", libvirt.VIR_FROM_REMOTE)

    with pytest.raises(HostUnreachable, match="read the host's capabilities"):
        host_capabilities(FakeConn(Down()))


def test_kvm_comes_last_on_an_x86_host_whose_cpu_has_no_vmx_or_svm():
    # The lab's host: libvirt offers kvm because /dev/kvm opens, but the CPU has no VT-x/AMD-V.
    caps = capabilities_from_xml((DATA / "caps-lab.xml").read_text(), [])
    assert caps.hardware_virt is False
    assert caps.virttypes("x86_64") == ["qemu", "kvm"]
    assert capabilities_from_xml(CAPS_VT, []).virttypes("x86_64") == ["kvm", "qemu"]
    assert HostCapabilities.from_dict(caps.to_dict()) == caps
