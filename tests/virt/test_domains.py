import libvirt
import pytest

from virt import PowerState, power_state
from virt.domains import domain_info_from_xml, redact_graphics_endpoint, strip_secrets, version_string


@pytest.mark.parametrize(
    ("state", "reason", "expected", "text"),
    [
        (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED, PowerState.RUNNING, "booted"),
        (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATED, PowerState.RUNNING, "migrated here"),
        (libvirt.VIR_DOMAIN_BLOCKED, 0, PowerState.RUNNING, ""),
        (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER, PowerState.PAUSED, "paused by a user"),
        (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR, PowerState.PAUSED, "paused on a disk I/O error"),
        (libvirt.VIR_DOMAIN_SHUTDOWN, 1, PowerState.SHUTTING_DOWN, "shutting down on request"),
        (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED, PowerState.SHUTOFF, "forced off"),
        (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SAVED, PowerState.SHUTOFF, "saved"),
        (libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_CRASHED_PANICKED, PowerState.CRASHED, "guest kernel panic"),
        (libvirt.VIR_DOMAIN_PMSUSPENDED, 0, PowerState.PMSUSPENDED, ""),
        (libvirt.VIR_DOMAIN_NOSTATE, 0, PowerState.UNKNOWN, ""),
        (99, 99, PowerState.UNKNOWN, ""),
    ],
)
def test_power_state_maps_every_libvirt_state(state, reason, expected, text):
    assert power_state(state, reason) == (expected, text)


XML = """<domain type='kvm'>
  <name>vm1</name><uuid>AAAAAAAA-1111-4111-8111-111111111111</uuid>
  <memory unit='GiB'>2</memory><currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static' current='2'>4</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <graphics type='spice' autoport='yes'/>
    <graphics type='vnc' port='5903' autoport='yes' listen='0.0.0.0' passwd='top&apos;secret'>
      <listen type='address' address='0.0.0.0'/>
    </graphics>
  </devices>
</domain>"""


def test_domain_info_reads_configuration_and_never_keeps_passwords():
    info = domain_info_from_xml(
        XML, state=libvirt.VIR_DOMAIN_RUNNING, reason=1, persistent=True, autostart=True, managed_save=False
    )
    assert info.uuid == "aaaaaaaa-1111-4111-8111-111111111111"
    assert (info.vcpus, info.max_vcpus) == (2, 4)
    assert (info.memory_kib, info.max_memory_kib) == (1048576, 2 * 1024 * 1024)
    assert info.arch == "x86_64"
    vnc = next(g for g in info.graphics if g.type == "vnc")
    assert (vnc.listen, vnc.port, vnc.has_password) == ("0.0.0.0", 5903, True)  # noqa: S104
    assert "secret" not in info.xml and "passwd" not in info.xml


def test_strip_secrets_handles_both_quote_styles():
    assert strip_secrets("<graphics passwd=\"a'b\" type='vnc'/>") == "<graphics type='vnc'/>"


def test_placement_rank_orders_running_over_defined_over_incoming():
    def rank(state, reason):
        return domain_info_from_xml(
            XML, state=state, reason=reason, persistent=True, autostart=False, managed_save=False
        ).placement_rank

    running = rank(libvirt.VIR_DOMAIN_RUNNING, 0)
    defined = rank(libvirt.VIR_DOMAIN_SHUTOFF, 0)
    incoming = rank(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION)
    assert running > defined > incoming


def test_version_string():
    assert version_string(9000000) == "9.0.0"
    assert version_string(7002001) == "7.2.1"
    assert version_string(0) == ""


def test_redact_graphics_endpoint_hides_ports_addresses_and_sockets_only_in_graphics():
    xml = """<domain><name>web</name><devices>
      <interface type='network'><source network='default' address='10.0.0.5'/></interface>
      <graphics type='vnc' port='5911' autoport='no' websocket='5700' listen='192.0.2.7'>
        <listen type='address' address='192.0.2.7'/>
      </graphics>
      <graphics type="spice" tlsPort="5912" port="5913"/>
      <graphics type='vnc' socket='/run/libvirt/qemu/vnc.sock'><listen type='socket' socket='/run/x.sock'/></graphics>
    </devices></domain>"""
    out = redact_graphics_endpoint(xml)
    for secret in ("5911", "5700", "192.0.2.7", "5912", "5913", "/run/libvirt/qemu/vnc.sock", "/run/x.sock"):
        assert secret not in out
    assert "port='hidden'" in out and 'tlsPort="hidden"' in out and "address='hidden'" in out
    assert "autoport='no'" in out and "type='vnc'" in out and "<listen type='address'" in out
    assert "address='10.0.0.5'" in out  # other devices untouched
