"""The lab's virtual networks: every real host has an isolated `lab` network with DHCP, on a bridge
and subnet of its own; guests get a lease at boot (and a new one when a NIC appears or its link
flips); `down` leaves no bridge or dnsmasq behind."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

import lab
from lab import networks
from lab.procs import read_cmdline, read_pidfile
from lab.state import LabState

pytestmark = pytest.mark.lab

SYS_NET = Path("/sys/class/net")


def _xml(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - XML from the lab's own libvirtd


def _ipv4_of(dev: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", dev], capture_output=True, text=True, check=True)
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out.stdout) for a in link["addr_info"]]


def _virsh_leases(virsh: str, host: lab.LabHost, network: str = "lab") -> str:
    return subprocess.run(
        [virsh, "-c", host.uri, "net-dhcp-leases", network], capture_output=True, text=True, check=True, timeout=30
    ).stdout


# --- no daemon needed ---------------------------------------------------------------------------


def test_lab_and_extra_networks_of_two_indexes_never_overlap_and_fit_interface_names() -> None:
    nets = [networks.lab_network(i) for i in (1, 254)]
    nets += [lab.extra_network(i, k) for i in (1, 254) for k in range(networks.EXTRA_PER_HOST)]
    subnets = [ipaddress.ip_network(n.subnet) for n in nets]
    assert not [(a, b) for i, a in enumerate(subnets) for b in subnets[i + 1 :] if a.overlaps(b)]
    assert len({n.bridge for n in nets}) == len(nets)
    assert max(len(n.bridge) for n in nets) <= 15  # IFNAMSIZ - 1
    first = networks.lab_network(7)
    assert (first.bridge, first.subnet, first.gateway) == ("vflab7", "10.250.7.0/24", "10.250.7.1")
    assert first.contains(first.dhcp_start) and first.contains(first.dhcp_end)
    extra = lab.extra_network(7, 3)
    assert (extra.name, extra.bridge, extra.subnet) == ("lab-x3", "vflab7x3", "10.251.7.48/28")
    with pytest.raises(lab.LabError):
        lab.extra_network(7, 16)


def test_network_xml_is_isolated_with_dhcp_and_no_dns() -> None:
    net = networks.lab_network(9, mac="52:54:00:01:02:03")
    root = _xml(lab.network_xml(net))
    assert root.find("forward") is None  # isolated: nothing leaves the bridge
    assert root.find("bridge").get("name") == "vflab9"
    assert root.find("mac").get("address") == "52:54:00:01:02:03"
    assert root.find("dns").get("enable") == "no"
    assert root.find("ip").get("address") == "10.250.9.1"
    assert root.find("ip/dhcp/range").get("start") == "10.250.9.100"


def test_guest_macs_are_stable_locally_administered_qemu_macs() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    assert lab.guest_mac(a) == lab.guest_mac(a)
    assert lab.guest_mac(a).startswith("52:54:00:") and len(lab.guest_mac(a)) == 17
    assert lab.guest_mac(a) != lab.guest_mac(b) or a[-6:] == b[-6:]


def test_a_state_written_before_lab_networks_still_loads() -> None:
    host = {
        "name": "lab1",
        "kind": "real",
        "uri": "qemu+tcp://127.0.0.1:16600/system",
        "unix_uri": "qemu+unix:///system?socket=/b/hosts/lab1/run/libvirt-sock",
        "host_uuid": str(uuid.uuid4()),
        "tcp_port": 16600,
        "dir": "/b/hosts/lab1",
        "dirs": {"run": "/b/hosts/lab1/run", "log": "/b/hosts/lab1/log"},
        "pids": {"libvirtd": 10},
        "mnt_ns": "mnt:[1]",
    }
    state = LabState.from_dict(
        {"base_dir": "/b", "lab_id": str(uuid.uuid4()), "port_base": 16600, "created_at": 1.0, "hosts": [host]}
    )
    assert state.host("lab1").network is None
    with_net = LabState.from_json(
        state.to_json().replace('"network": null', json.dumps({"network": networks.lab_network(3).__dict__})[1:-1])
    )
    assert with_net.host("lab1").network == networks.lab_network(3)


def test_an_index_whose_subnet_is_routed_counts_as_taken(monkeypatch) -> None:
    monkeypatch.setattr(networks, "routes", lambda: [(ipaddress.ip_network("10.251.5.32/28"), "eth9")])
    assert networks.index_in_use(5) == "route 10.251.5.32/28 dev eth9"
    assert networks.index_in_use(6) is None or "interface" in networks.index_in_use(6)


# --- the running lab ------------------------------------------------------------------------------


def test_every_real_host_has_its_own_isolated_lab_network_with_its_bridge_on_the_machine(running_lab) -> None:
    nets = [h.network for h in running_lab.real_hosts]
    assert all(nets)
    assert len({n.bridge for n in nets}) == len({n.subnet for n in nets}) == len({n.index for n in nets}) == 2
    for host in running_lab.real_hosts:
        net = host.network
        assert (SYS_NET / net.bridge / "bridge").is_dir()
        assert (SYS_NET / net.bridge / "address").read_text().strip() == net.mac
        assert _ipv4_of(net.bridge) == [f"{net.gateway}/24"]
        conn = libvirt.open(host.uri)
        try:
            obj = conn.networkLookupByName("lab")
            assert obj.isActive() and obj.autostart()
            root = _xml(obj.XMLDesc())
            assert root.find("forward") is None
            assert root.find("bridge").get("name") == net.bridge
        finally:
            conn.close()


def test_the_first_guest_of_each_host_holds_a_lease_with_its_mac_and_hostname(running_lab, virsh) -> None:
    for host in running_lab.real_hosts:
        guest = host.guests[0]
        lease = lab.wait_guest_lease(host, guest.name, timeout=60)
        mac = lab.guest_mac(guest.uuid)
        assert lease["mac"] == mac
        assert lease["hostname"] == guest.name
        assert host.network.contains(lease["ipaddr"])
        listed = _virsh_leases(virsh, host)
        row = next(line for line in listed.splitlines() if mac in line)
        assert f"{lease['ipaddr']}/24" in row and guest.name in row
        # The guest applied it: it says so on its serial console.
        deadline = time.monotonic() + 10
        while (addr := lab.guest_reported_addresses(host, guest.name)) == [] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert addr[-1] == ("eth0", f"{lease['ipaddr']}/24")


def test_guest_xml_has_a_virtio_nic_on_the_lab_network_with_the_uuid_mac(running_lab) -> None:
    for host in running_lab.real_hosts:
        conn = libvirt.open(host.uri)
        try:
            for guest in host.guests:
                ifaces = _xml(conn.lookupByName(guest.name).XMLDesc()).findall("devices/interface")
                assert len(ifaces) == 1
                assert ifaces[0].get("type") == "network"
                assert ifaces[0].find("source").get("network") == "lab"
                assert ifaces[0].find("model").get("type") == "virtio"
                assert ifaces[0].find("mac").get("address") == lab.guest_mac(guest.uuid)
        finally:
            conn.close()


def test_extra_networks_on_two_hosts_coexist_and_a_hotplugged_nic_gets_a_lease_there(running_lab, virsh) -> None:
    lab1, lab2 = running_lab.real_hosts
    made = []
    try:
        for host in (lab1, lab2):
            net = lab.free_network(host)
            conn = libvirt.open(host.uri)
            try:
                conn.networkCreateXML(lab.network_xml(net))  # transient: gone when destroyed
            finally:
                conn.close()
            made.append((host, net))
        (_, net1), (_, net2) = made
        assert net1.bridge != net2.bridge
        assert not ipaddress.ip_network(net1.subnet).overlaps(ipaddress.ip_network(net2.subnet))
        assert _ipv4_of(net1.bridge) == [f"{net1.gateway}/28"] and _ipv4_of(net2.bridge) == [f"{net2.gateway}/28"]

        guest = lab1.guests[0].name
        lab.wait_guest_ready(lab1, guest, timeout=60)
        mac = "52:54:00:fe:00:01"
        nic = f"<interface type='network'><mac address='{mac}'/><source network='{net1.name}'/><model type='virtio'/></interface>"
        conn = libvirt.open(lab1.uri)
        try:
            conn.lookupByName(guest).attachDeviceFlags(nic, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        finally:
            conn.close()
        lease = lab.wait_guest_lease(lab1, guest, timeout=60, network=net1.name)
        assert lease["mac"] == mac and lease["hostname"] == guest and net1.contains(lease["ipaddr"])
        assert mac in _virsh_leases(virsh, lab1, net1.name)
        conn = libvirt.open(lab1.uri)
        try:
            conn.lookupByName(guest).detachDeviceFlags(nic, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        finally:
            conn.close()
    finally:
        for host, net in made:
            conn = libvirt.open(host.uri)
            try:
                conn.networkLookupByName(net.name).destroy()
            finally:
                conn.close()
    assert not (SYS_NET / net1.bridge).exists() and not (SYS_NET / net2.bridge).exists()


def _move_nic(host: lab.LabHost, guest: str, frm: str, to: str) -> None:
    iface = lab.guests.guest_nic(host, guest, frm)
    iface.find("source").set("network", to)
    conn = libvirt.open(host.uri)
    try:
        conn.lookupByName(guest).updateDeviceFlags(
            ET.tostring(iface, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE
        )
    finally:
        conn.close()


def _wait_reported(host: lab.LabHost, guest: str, net: lab.LabNetwork, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        seen = [addr for iface, addr in lab.guest_reported_addresses(host, guest) if iface == "eth0"]
        if seen and net.contains(seen[-1].split("/")[0]):
            return seen[-1]
        assert time.monotonic() < deadline, f"{guest} reports {seen}, nothing in {net.subnet}"
        time.sleep(0.2)


def test_a_nic_moved_to_another_network_gets_an_address_there_and_back(running_lab) -> None:
    """libvirt moves the NIC without a link flip: the guest notices its DHCP server is gone."""
    host = running_lab.real_hosts[0]
    guest = host.guests[0].name
    lab.wait_guest_lease(host, guest, timeout=60)
    net = lab.free_network(host)
    conn = libvirt.open(host.uri)
    try:
        conn.networkCreateXML(lab.network_xml(net))
    finally:
        conn.close()
    try:
        _move_nic(host, guest, "lab", net.name)
        moved = _wait_reported(host, guest, net)
        assert lab.wait_guest_lease(host, guest, network=net.name)["ipaddr"] == moved.split("/")[0]
        _move_nic(host, guest, net.name, "lab")
        back = _wait_reported(host, guest, host.network)
        assert lab.wait_guest_lease(host, guest)["ipaddr"] == back.split("/")[0]
    finally:
        try:  # the migration tests expect the guest back on `lab`
            _move_nic(host, guest, net.name, "lab")
        except lab.LabError:
            pass  # it is there already
        conn = libvirt.open(host.uri)
        try:
            conn.networkLookupByName(net.name).destroy()
        finally:
            conn.close()


def test_a_guest_whose_link_flips_asks_again_and_keeps_its_address(running_lab) -> None:
    host = running_lab.real_hosts[0]
    guest = host.guests[0].name
    first = lab.wait_guest_lease(host, guest, timeout=60)
    bound = len(lab.guest_reported_addresses(host, guest))
    lab.bounce_guest_link(host, guest)
    deadline = time.monotonic() + 30
    while len(lab.guest_reported_addresses(host, guest)) == bound:
        assert time.monotonic() < deadline, "the guest did not ask for a lease again after its link flipped"
        time.sleep(0.1)
    assert lab.guest_reported_addresses(host, guest)[-1] == ("eth0", f"{first['ipaddr']}/24")


# --- down -----------------------------------------------------------------------------------------


def _dnsmasq_pids(state: lab.LabState) -> dict[str, int]:
    out = {}
    for host in state.real_hosts:
        pid = read_pidfile(Path(host.run_dir) / "network" / "lab.pid")
        assert pid is not None and "dnsmasq" in (read_cmdline(pid) or ""), host.name
        out[host.name] = pid
    return out


def _rules_naming(bridge: str) -> list[str]:
    if shutil.which("iptables") is None:
        return []
    rules = []
    for table in ("filter", "nat", "mangle"):
        out = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True).stdout
        rules += [r for r in out.splitlines() if f" {bridge} " in f"{r} "]
    return rules


def test_down_removes_bridges_and_dnsmasq_even_of_a_host_whose_libvirtd_was_killed(
    scratch_base_dir, running_lab, port_base_for
) -> None:
    state = lab.up(scratch_base_dir, hosts=2, guests_per_host=1, port_base=port_base_for(2, 0), wait_guests=False)
    bridges = [h.network.bridge for h in state.real_hosts]
    # Another lab on the machine: indexes of its own.
    assert not {h.network.index for h in state.real_hosts} & {h.network.index for h in running_lab.real_hosts}
    assert all((SYS_NET / b).exists() for b in bridges)
    dnsmasq = _dnsmasq_pids(state)
    assert all(_rules_naming(b) for b in bridges) or shutil.which("iptables") is None

    # lab2's daemon dies without stopping its network: its dnsmasq and bridge stay...
    lab.kill_libvirtd(scratch_base_dir, "lab2")
    assert (SYS_NET / bridges[1]).exists() and read_cmdline(dnsmasq["lab2"])

    lab.down(scratch_base_dir)

    # ... and down removes them all the same.
    assert [b for b in bridges if (SYS_NET / b).exists()] == []
    assert [pid for pid in dnsmasq.values() if read_cmdline(pid) is not None] == []
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    assert not [line for line in links.splitlines() if line.split()[0].split("@")[0] in bridges]
    assert [r for b in bridges for r in _rules_naming(b)] == []
    assert lab.leftovers(state) == []
    # The other lab's networks were not touched.
    assert all((SYS_NET / h.network.bridge).exists() for h in running_lab.real_hosts)
