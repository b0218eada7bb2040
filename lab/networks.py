"""The lab's virtual networks: one isolated `lab` network with DHCP on every real host.

All lab hosts of the machine (of every lab running on it) share the root network namespace: their
bridges, routes and dnsmasq processes live side by side, and libvirt refuses a network whose
subnet is already routed. So each real host gets a network index unique on the machine, and with
it its own names and addresses:

- the `lab` network: bridge ``vflab<i>``, subnet ``10.250.<i>.0/24``, gateway ``.1`` (the host's
  side of the bridge), DHCP from ``.100`` to ``.199``;
- room for extra networks that tests create: ``10.251.<i>.0/24`` cut into sixteen ``/28``s,
  network ``k`` (0-15) named ``lab-x<k>`` on bridge ``vflab<i>x<k>`` (see `extra_network`,
  `free_network`).

Every network the lab makes is isolated (no ``<forward>``): libvirt's firewall rules keep its
traffic on the bridge, and with it on this machine. The index is chosen under a lock shared by
every lab process of the machine, from the host's port block (stable for a given port base), and
skipped while a bridge or route of that index exists. A bridge is the lab's to delete only while its
MAC is the one the lab gave it.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import shlex
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import libvirt

from lab.errors import LabError
from lab.procs import Proc, read_pidfile
from lab.state import LabHost, LabNetwork

log = logging.getLogger(__name__)

LAB_NETWORK = "lab"  # the network every real lab guest's NIC is on
BRIDGE_PREFIX = "vflab"
EXTRA_PER_HOST = 16
INDEXES = range(1, 255)
LOCK_FILE = "/run/virtfleet-lab-networks.lock"
SYS_NET = Path("/sys/class/net")
DNSMASQ = "/usr/sbin/dnsmasq"


def bridge_name(index: int) -> str:
    return f"{BRIDGE_PREFIX}{index}"


def lab_network(index: int, mac: str = "") -> LabNetwork:
    """The `lab` network of network index `index`."""
    net = ipaddress.ip_network(f"10.250.{index}.0/24")
    hosts = list(net.hosts())
    return LabNetwork(
        name=LAB_NETWORK,
        bridge=bridge_name(index),
        subnet=str(net),
        gateway=str(hosts[0]),
        dhcp_start=str(hosts[99]),
        dhcp_end=str(hosts[198]),
        index=index,
        mac=mac,
    )


def extra_network(host: LabHost | int, k: int = 0) -> LabNetwork:
    """Extra network `k` (0-15) of a real lab host: a /28 and a bridge no other lab host uses.

    `host` is a LabHost (its `network` tells the index) or a network index. Nothing is defined:
    pass `network_xml(net)` to libvirt (networkDefineXML / networkCreateXML) to make it.
    """
    index = host if isinstance(host, int) else _index_of(host)
    if not 0 <= k < EXTRA_PER_HOST:
        raise LabError(f"extra network {k}: a lab host has {EXTRA_PER_HOST} (0-{EXTRA_PER_HOST - 1})")
    net = ipaddress.ip_network(f"10.251.{index}.{16 * k}/28")
    hosts = list(net.hosts())  # 14 addresses: gateway, 13 for DHCP
    return LabNetwork(
        name=f"{LAB_NETWORK}-x{k}",
        bridge=f"{bridge_name(index)}x{k}",
        subnet=str(net),
        gateway=str(hosts[0]),
        dhcp_start=str(hosts[1]),
        dhcp_end=str(hosts[-1]),
        index=index,
    )


def free_network(host: LabHost) -> LabNetwork:
    """The first extra network of `host` (a real LabHost) that is neither defined there nor has its
    bridge on the machine: for a test that makes a network of its own and must not collide."""
    conn = libvirt.open(host.unix_uri)
    try:
        defined = set(conn.listDefinedNetworks()) | set(conn.listNetworks())
        bridges = set()
        for name in defined:
            with contextlib.suppress(libvirt.libvirtError):
                bridges.add(conn.networkLookupByName(name).bridgeName())
    finally:
        conn.close()
    for k in range(EXTRA_PER_HOST):
        net = extra_network(host, k)
        if net.name not in defined and net.bridge not in bridges and not (SYS_NET / net.bridge).exists():
            return net
    raise LabError(f"{host.name}: all {EXTRA_PER_HOST} extra lab networks are in use")


def network_xml(net: LabNetwork, *, uuid_: str | None = None, dhcp: bool = True) -> str:
    """An isolated network (no <forward>: nothing leaves the bridge) with DHCP, without DNS."""
    ip = ipaddress.ip_network(net.subnet)
    parts = ["<network>", f"  <name>{_esc(net.name)}</name>"]
    if uuid_:
        parts.append(f"  <uuid>{uuid_}</uuid>")
    # STP off: a host-only bridge has no loop to break, and its ports forward at once.
    parts.append(f"  <bridge name={quoteattr(net.bridge)} stp='off' delay='0'/>")
    if net.mac:
        parts.append(f"  <mac address={quoteattr(net.mac)}/>")
    parts.append("  <dns enable='no'/>")
    parts.append(f"  <ip address={quoteattr(net.gateway)} netmask={quoteattr(str(ip.netmask))}>")
    if dhcp:
        parts.append(f"    <dhcp><range start={quoteattr(net.dhcp_start)} end={quoteattr(net.dhcp_end)}/></dhcp>")
    parts += ["  </ip>", "</network>"]
    return "\n".join(parts) + "\n"


def network_mac(lab_id: uuid.UUID, host: str, name: str = LAB_NETWORK) -> str:
    """The bridge MAC of one lab network: how `down` recognises a bridge as the lab's."""
    return _mac(uuid.uuid5(lab_id, f"network/{host}/{name}").bytes)


def guest_mac(guest_uuid: str) -> str:
    """A stable MAC for a lab guest's NIC, derived from its UUID (QEMU's 52:54:00 prefix)."""
    return _mac(uuid.UUID(guest_uuid).bytes)


def _mac(raw: bytes) -> str:
    return "52:54:00:" + ":".join(f"{b:02x}" for b in raw[-3:])


def _esc(text: str) -> str:
    return quoteattr(text)[1:-1]


def _index_of(host: LabHost) -> int:
    if host.network is None:
        raise LabError(f"{host.name} has no lab network (a fake host, or a lab recorded before networks)")
    return host.network.index


# --- choosing an index and starting the network -----------------------------------------------


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """Held by every lab process of this machine while it claims a network index (the bridge
    existing is the claim) or starts guests (libvirt picks tap names `vnet<N>` per daemon: two
    daemons creating taps at the same instant could pick the same name)."""
    with open(LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def preferred_index(tcp_port: int) -> int:
    """Where the search for a free index starts: the host's 50-port block, so a lab on a given port
    base gets the same subnets each time (unless another lab holds them)."""
    return INDEXES[(tcp_port // 50) % len(INDEXES)]


def index_in_use(index: int) -> str | None:
    """Why network index `index` is taken on this machine (a bridge or a route of its subnets), or None."""
    for name in (bridge_name(index), *(f"{bridge_name(index)}x{k}" for k in range(EXTRA_PER_HOST))):
        if (SYS_NET / name).exists():
            return f"interface {name} exists"
    mine = [ipaddress.ip_network(f"10.250.{index}.0/24"), ipaddress.ip_network(f"10.251.{index}.0/24")]
    for dest, dev in routes():
        if any(dest.overlaps(net) for net in mine) and dest.prefixlen > 0:
            return f"route {dest} dev {dev}"
    return None


def routes() -> list[tuple[ipaddress.IPv4Network, str]]:
    """The IPv4 routes of this network namespace, from /proc/net/route."""
    out = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = ipaddress.IPv4Address(bytes.fromhex(fields[1])[::-1])
        mask = ipaddress.IPv4Address(bytes.fromhex(fields[7])[::-1])
        with contextlib.suppress(ValueError):
            out.append((ipaddress.IPv4Network(f"{dest}/{mask}", strict=False), fields[0]))
    return out


def start_lab_network(uri: str, host: str, lab_id: uuid.UUID, tcp_port: int) -> LabNetwork:
    """Define, start and autostart the `lab` network on one real host, on an index free on the
    machine; returns it. Runs under `machine_lock`, so two labs never claim the same index."""
    mac = network_mac(lab_id, host)
    with machine_lock():
        start = INDEXES.index(preferred_index(tcp_port))
        candidates = list(INDEXES[start:]) + list(INDEXES[:start])
        reasons = []
        for index in candidates:
            why = index_in_use(index)
            if why is None:
                break
            reasons.append(f"{index}: {why}")
        else:
            raise LabError(f"{host}: no free lab network index on this machine ({'; '.join(reasons[:5])} ...)")
        net = lab_network(index, mac)
        conn = libvirt.open(uri)
        try:
            try:
                old = conn.networkLookupByName(LAB_NETWORK)
                if old.isActive():
                    old.destroy()
                old.undefine()
            except libvirt.libvirtError:
                pass
            obj = conn.networkDefineXML(network_xml(net, uuid_=str(uuid.uuid5(lab_id, f"network/{host}/lab"))))
            obj.create()
            obj.setAutostart(1)
        except libvirt.libvirtError as e:
            raise LabError(f"{host}: the lab network ({net.bridge}, {net.subnet}) did not start: {e}") from e
        finally:
            conn.close()
    log.debug("%s: network %s on %s, %s", host, net.name, net.bridge, net.subnet)
    return net


# --- stopping -------------------------------------------------------------------------------------


def destroy_networks(conn: libvirt.virConnect) -> list[str]:
    """Stop every active network of a lab host (its dnsmasq, firewall rules and bridge go with it)."""
    stopped = []
    for net in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
        try:
            net.destroy()
            stopped.append(net.name())
        except libvirt.libvirtError as e:
            log.warning("could not stop network %s: %s", net.name(), e)
    return stopped


@dataclass(frozen=True)
class ActiveNetwork:
    """A network a lab host's libvirtd had running, as its status file in the run dir says."""

    name: str
    bridge: str
    mac: str
    pidfile: Path


def recorded_networks(host_dir: str | os.PathLike[str]) -> list[ActiveNetwork]:
    """Networks libvirt marked active in a host's run dir (libvirt removes the file when it stops one)."""
    out = []
    status_dir = Path(host_dir) / "run" / "network"
    for path in sorted(status_dir.glob("*.xml")) if status_dir.is_dir() else ():
        try:
            root = ET.parse(path).getroot()  # noqa: S314 - written by the lab's own libvirtd
        except (ET.ParseError, OSError):
            continue
        net = root.find("network") if root.tag == "networkstatus" else root
        if net is None or net.find("bridge") is None:
            continue
        bridge = net.find("bridge").get("name", "")  # type: ignore[union-attr]
        mac = (net.find("mac").get("address", "") if net.find("mac") is not None else "").lower()  # type: ignore[union-attr]
        name = net.findtext("name") or path.stem
        out.append(ActiveNetwork(name, bridge, mac, status_dir / f"{name}.pid"))
    return out


def dnsmasq_procs(host_dir: str, host_name: str, ns: str | None) -> list[Proc]:
    """The dnsmasq of each network a host's libvirtd runs, by its pidfile; ours only while it lives
    in that host's mount namespace (libvirtd started it there)."""
    procs = []
    run = Path(host_dir) / "run" / "network"
    for pidfile in sorted(run.glob("*.pid")) if run.is_dir() else ():
        pid = read_pidfile(pidfile)
        if pid is not None and ns:
            procs.append(
                Proc(pid, "dnsmasq", "/var/lib/libvirt/dnsmasq/", label=f"{host_name}/dnsmasq {pidfile.stem}", ns=ns)
            )
    return procs


def owned_bridge(bridge: str, mac: str) -> bool:
    """The bridge exists and carries the MAC the lab gave it (a bridge someone else made does not)."""
    try:
        return bool(mac) and (SYS_NET / bridge / "address").read_text().strip().lower() == mac.lower()
    except OSError:
        return False


def leftover_bridges(host_dirs: list[str]) -> list[str]:
    """Bridges of the hosts' networks that still exist (after a daemon died without stopping them)."""
    return [n.bridge for d in host_dirs for n in recorded_networks(d) if owned_bridge(n.bridge, n.mac)]


def remove_leftovers(host_dirs: list[str]) -> list[str]:
    """Delete what a killed libvirtd leaves of its networks: the bridge, its dummy `-nic` port and
    the firewall rules naming the bridge. Only bridges whose MAC is the recorded one. Returns the
    bridges deleted."""
    removed = []
    for d in host_dirs:
        for net in recorded_networks(d):
            if not owned_bridge(net.bridge, net.mac):
                continue
            for port in sorted((SYS_NET / net.bridge / "brif").glob("*")):
                # libvirt's dummy port holding the bridge MAC: '<bridge>-nic' (maybe shortened).
                if port.name.endswith("-nic"):
                    _ip("link", "del", port.name)
            _ip("link", "del", net.bridge)
            _drop_firewall_rules(net.bridge)
            removed.append(net.bridge)
            log.info("deleted bridge %s left by a stopped lab host (%s)", net.bridge, d)
    return removed


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, check=False, timeout=10)


def _drop_firewall_rules(bridge: str) -> None:
    """libvirt's iptables rules for `bridge`, deleted one by one (only rules naming that interface)."""
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            listed = subprocess.run(
                [tool, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False, timeout=10
            ).stdout
            for rule in listed.splitlines():
                words = shlex.split(rule)
                if words[:1] == ["-A"] and any(
                    words[i] in ("-i", "-o", "--in-interface", "--out-interface") and words[i + 1] == bridge
                    for i in range(len(words) - 1)
                ):
                    subprocess.run([tool, "-w", "-t", table, "-D", *words[1:]], capture_output=True, check=False)
