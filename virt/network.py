"""Virtual networks: reads, operations, XML for new ones, DHCP leases and static host entries, the
addresses guests got, and network lifecycle events.

Everything takes a HostConnection and returns frozen dataclasses; libvirt errors become
virt.errors exceptions (NetworkNotFound for a network that is gone).
"""

from __future__ import annotations

import ipaddress
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import libvirt

from .connection import HostConnection
from .domains import parse_xml
from .errors import OperationUnsupported, VirtError, translate

log = logging.getLogger(__name__)

# The modes an operator picks from (libvirt's <forward mode>, and no <forward> at all = isolated).
MODES = ("nat", "route", "open", "isolated", "bridge", "macvtap")
MODE_LABELS = {
    "nat": "NAT", "route": "Routed", "open": "Open", "isolated": "Isolated", "bridge": "Host bridge",
    "macvtap": "macvtap", "other": "Other",
}  # fmt: skip
# Modes whose network has an address and DHCP of its own (libvirt runs dnsmasq for them).
ADDRESSED_MODES = ("nat", "route", "open", "isolated")
MACVTAP_MODES = ("bridge", "private", "vepa", "passthrough")  # libvirt's forward modes for macvtap
LINK_BOUNCE = 1.0  # seconds a moved NIC's link stays down, long enough for the guest to see it


# --- what is read ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DhcpHost:
    """A static DHCP entry: this MAC (or host name) always gets this address."""

    mac: str = ""
    ip: str = ""
    name: str = ""

    def xml(self) -> str:
        attrs = "".join(
            f" {k}={quoteattr(v)}" for k, v in (("mac", self.mac), ("name", self.name), ("ip", self.ip)) if v
        )
        return f"<host{attrs}/>"


@dataclass(frozen=True)
class IpRange:
    """One <ip> of a network: its address and prefix, and the DHCP range it hands out (if any)."""

    family: str  # ipv4, ipv6
    address: str  # the host side's address on the network (the gateway guests see)
    prefix: int
    dhcp_start: str = ""
    dhcp_end: str = ""
    hosts: tuple[DhcpHost, ...] = ()

    @property
    def subnet(self) -> str:
        return str(ipaddress.ip_interface(f"{self.address}/{self.prefix}").network)

    @property
    def has_dhcp(self) -> bool:
        return bool(self.dhcp_start)


@dataclass(frozen=True)
class NetworkInfo:
    uuid: str
    name: str
    active: bool
    persistent: bool
    autostart: bool
    mode: str  # one of MODES, or "other" (hostdev, a forward mode we do not know)
    forward_mode: str  # libvirt's own word ("" for isolated)
    bridge: str  # the bridge device (libvirt's own, or the host bridge a bridge-mode network uses)
    forward_dev: str  # nat/route: the outgoing device, if pinned; macvtap: the host device
    ips: tuple[IpRange, ...]
    xml: str

    @property
    def has_dhcp(self) -> bool:
        return any(ip.has_dhcp for ip in self.ips)

    @property
    def dhcp_hosts(self) -> tuple[DhcpHost, ...]:
        return tuple(h for ip in self.ips for h in ip.hosts)


@dataclass(frozen=True)
class Lease:
    """A DHCP lease dnsmasq handed out on a network."""

    mac: str
    ip: str
    prefix: int
    family: str  # ipv4, ipv6
    hostname: str = ""
    client_id: str = ""
    expires: int = 0  # seconds since the epoch, 0 for an infinite lease
    interface: str = ""  # the network's bridge


@dataclass(frozen=True)
class GuestAddress:
    """An address a guest has on one of its NICs, and who said so."""

    mac: str
    ip: str
    prefix: int
    family: str
    source: str  # lease, arp, agent
    interface: str = ""  # the NIC's name as the source knows it (vnet0, eth0)


def _mode_of(root: ET.Element) -> tuple[str, str, str]:
    """(mode, libvirt's forward mode, forward device) of a network's XML."""
    forward = root.find("forward")
    if forward is None:
        return "isolated", "", ""
    fmode = forward.get("mode", "nat")
    dev = forward.get("dev", "")
    if not dev:
        iface = forward.find("interface")
        dev = iface.get("dev", "") if iface is not None else ""
    if fmode in ("nat", "route", "open"):
        return fmode, fmode, dev
    if fmode == "bridge" and root.find("bridge") is not None and not dev:
        return "bridge", fmode, dev  # onto a host bridge
    if fmode in MACVTAP_MODES:
        return "macvtap", fmode, dev
    return "other", fmode, dev


def _ips(root: ET.Element) -> tuple[IpRange, ...]:
    found = []
    for ip in root.findall("ip"):
        family = ip.get("family", "ipv4")
        address = ip.get("address", "")
        if not address:
            continue
        given = ip.get("prefix")
        if given is not None:
            prefix = int(given)
        elif ip.get("netmask"):
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{ip.get('netmask')}").prefixlen
        else:
            prefix = 24 if family == "ipv4" else 64
        dhcp = ip.find("dhcp")
        rng = dhcp.find("range") if dhcp is not None else None
        hosts = tuple(
            DhcpHost(mac=h.get("mac", "").lower(), ip=h.get("ip", ""), name=h.get("name", "") or h.get("id", ""))
            for h in (dhcp.findall("host") if dhcp is not None else ())
        )
        found.append(IpRange(family="ipv6" if family == "ipv6" else "ipv4", address=address, prefix=prefix,
                             dhcp_start=rng.get("start", "") if rng is not None else "",
                             dhcp_end=rng.get("end", "") if rng is not None else "", hosts=hosts))  # fmt: skip
    return tuple(found)


def network_from_xml(xml: str, *, active: bool, persistent: bool, autostart: bool) -> NetworkInfo:
    root = parse_xml(xml)
    mode, fmode, dev = _mode_of(root)
    bridge = root.find("bridge")
    return NetworkInfo(
        uuid=(root.findtext("uuid") or "").strip(),
        name=(root.findtext("name") or "").strip(),
        active=active,
        persistent=persistent,
        autostart=autostart,
        mode=mode,
        forward_mode=fmode,
        bridge=bridge.get("name", "") if bridge is not None else "",
        forward_dev=dev,
        ips=_ips(root),
        xml=xml,
    )


# --- XML of new networks ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkSpec:
    """What a new network is, already validated (networks.params): the form per mode fills it."""

    name: str
    mode: str  # one of MODES
    bridge: str = ""  # nat/route/open/isolated: its own bridge's name ("" = libvirt picks virbrN); bridge: the host's
    forward_dev: str = ""  # nat/route: pin the outgoing device; macvtap: the host device
    macvtap_mode: str = "bridge"
    ipv4: str = ""  # "192.168.100.1/24": the network's own address and prefix
    dhcp_start: str = ""
    dhcp_end: str = ""
    ipv6: str = ""  # "fd00:1::1/64"
    dhcp6_start: str = ""
    dhcp6_end: str = ""
    domain: str = ""  # DNS domain dnsmasq serves
    mtu: int = 0
    hosts: tuple[DhcpHost, ...] = field(default_factory=tuple)


def _ip_xml(cidr: str, start: str, end: str, hosts: tuple[DhcpHost, ...], family: str) -> str:
    iface = ipaddress.ip_interface(cidr)
    fam = " family='ipv6'" if family == "ipv6" else ""
    dhcp = ""
    if start:
        dhcp = f"<dhcp><range start={quoteattr(start)} end={quoteattr(end)}/>{''.join(h.xml() for h in hosts)}</dhcp>"
    return f"<ip{fam} address={quoteattr(str(iface.ip))} prefix='{iface.network.prefixlen}'>{dhcp}</ip>"


def network_xml(spec: NetworkSpec) -> str:
    parts = [f"<name>{escape(spec.name)}</name>"]
    if spec.mode == "bridge":
        parts += ["<forward mode='bridge'/>", f"<bridge name={quoteattr(spec.bridge)}/>"]
    elif spec.mode == "macvtap":
        parts.append(f"<forward mode={quoteattr(spec.macvtap_mode)}><interface dev={quoteattr(spec.forward_dev)}/>"
                     "</forward>")  # fmt: skip
    else:
        if spec.mode != "isolated":
            dev = f" dev={quoteattr(spec.forward_dev)}" if spec.forward_dev and spec.mode in ("nat", "route") else ""
            parts.append(f"<forward mode={quoteattr(spec.mode)}{dev}/>")
        bridge = f" name={quoteattr(spec.bridge)}" if spec.bridge else ""
        parts.append(f"<bridge{bridge} stp='on' delay='0'/>")
        if spec.mtu:
            parts.append(f"<mtu size='{int(spec.mtu)}'/>")
        if spec.domain:
            parts.append(f"<domain name={quoteattr(spec.domain)} localOnly='yes'/>")
        if spec.ipv4:
            hosts4 = tuple(h for h in spec.hosts if not h.ip or ":" not in h.ip)
            parts.append(_ip_xml(spec.ipv4, spec.dhcp_start, spec.dhcp_end, hosts4, "ipv4"))
        if spec.ipv6:
            hosts6 = tuple(h for h in spec.hosts if h.ip and ":" in h.ip)
            parts.append(_ip_xml(spec.ipv6, spec.dhcp6_start, spec.dhcp6_end, hosts6, "ipv6"))
    return f"<network>{''.join(parts)}</network>"


def xml_name(xml: str) -> str:
    """The <name> of a network definition someone pasted (ValueError if it is not one)."""
    try:
        root = parse_xml(xml)
    except Exception as exc:  # defusedxml and ElementTree raise several kinds
        raise ValueError(f"this is not well-formed XML: {exc}") from None
    if root.tag != "network":
        raise ValueError(f"the XML describes a <{root.tag}>, not a <network>")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise ValueError("the network XML has no <name>")
    return name


# --- reads -----------------------------------------------------------------------------------------------
def _call(what: str, fn: Callable, *args):
    try:
        return fn(*args)
    except libvirt.libvirtError as exc:
        raise translate(exc, context=what) from None


def _net(conn: HostConnection, name: str) -> libvirt.virNetwork:
    return _call(f"network {name}", conn.raw.networkLookupByName, name)


def _info(net: libvirt.virNetwork) -> NetworkInfo:
    name = net.name()
    what = f"network {name}"
    persistent = bool(_call(what, net.isPersistent))
    return network_from_xml(
        _call(what, net.XMLDesc, 0),
        active=bool(_call(what, net.isActive)),
        persistent=persistent,
        autostart=bool(_call(what, net.autostart)) if persistent else False,
    )


def list_networks(conn: HostConnection) -> list[NetworkInfo]:
    """Every virtual network of the host; a driver without networks (LXC's, say, on a host without
    the network driver) has none."""
    try:
        nets = conn.raw.listAllNetworks(0)
    except libvirt.libvirtError as exc:
        err = translate(exc, context="list networks")
        if isinstance(err, OperationUnsupported):
            return []
        raise err from None
    return [_info(n) for n in nets]


def network_info(conn: HostConnection, name: str) -> NetworkInfo:
    return _info(_net(conn, name))


_LEASE_FAMILY = {libvirt.VIR_IP_ADDR_TYPE_IPV4: "ipv4", libvirt.VIR_IP_ADDR_TYPE_IPV6: "ipv6"}


def leases(conn: HostConnection, name: str) -> list[Lease]:
    """The DHCP leases of an active network (OperationUnsupported where the driver has none)."""
    found = []
    for item in _call(f"DHCP leases of network {name}", _net(conn, name).DHCPLeases, None, 0) or []:
        found.append(Lease(mac=(item.get("mac") or "").lower(), ip=item.get("ipaddr") or "",
                           prefix=int(item.get("prefix") or 0), family=_LEASE_FAMILY.get(item.get("type"), "ipv4"),
                           hostname=item.get("hostname") or "", client_id=item.get("clientid") or "",
                           expires=int(item.get("expirytime") or 0), interface=item.get("iface") or ""))  # fmt: skip
    return found


SOURCES = {
    "lease": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
    "arp": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
    "agent": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
}


def guest_addresses(conn: HostConnection, uuid: str, source: str) -> list[GuestAddress]:
    """The addresses of a running domain's NICs as ``source`` (lease, arp, agent) knows them."""
    dom = _call(f"domain {uuid}", conn.raw.lookupByUUIDString, uuid)
    found = []
    for iface, data in (_call(f"addresses of {dom.name()} ({source})", dom.interfaceAddresses, SOURCES[source])
                        or {}).items():  # fmt: skip
        mac = (data.get("hwaddr") or "").lower()
        for addr in data.get("addrs") or ():
            ip = addr.get("addr") or ""
            if not ip or ip.startswith(("127.", "fe80:")) or ip == "::1":
                continue
            found.append(GuestAddress(mac=mac, ip=ip, prefix=int(addr.get("prefix") or 0),
                                      family=_LEASE_FAMILY.get(addr.get("type"), "ipv4"), source=source,
                                      interface=iface))  # fmt: skip
    return found


def has_agent(domain_xml: str) -> bool:
    """Whether the domain has a QEMU guest agent channel (asking an agent-less guest only errs)."""
    root = parse_xml(domain_xml)
    return any(t.get("name") == "org.qemu.guest_agent.0" for t in root.findall("./devices/channel/target"))


# --- operations --------------------------------------------------------------------------------------------
def network_define(conn: HostConnection, xml: str) -> NetworkInfo:
    """Define a network from XML, validated against libvirt's schema where the host can."""
    flags = getattr(libvirt, "VIR_NETWORK_DEFINE_VALIDATE", 0)
    try:
        net = conn.raw.networkDefineXMLFlags(xml, flags)
    except AttributeError:  # libvirt-python without the flags call
        net = _call("define the network", conn.raw.networkDefineXML, xml)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG) and flags:
            net = _call("define the network", conn.raw.networkDefineXML, xml)  # an older daemon
        else:
            raise translate(exc, context="define the network") from None
    return _info(net)


def network_start(conn: HostConnection, name: str) -> None:
    _call(f"start network {name}", _net(conn, name).create)


def network_stop(conn: HostConnection, name: str) -> None:
    _call(f"stop network {name}", _net(conn, name).destroy)


def network_set_autostart(conn: HostConnection, name: str, enabled: bool) -> None:
    _call(f"set autostart of network {name}", _net(conn, name).setAutostart, 1 if enabled else 0)


def network_undefine(conn: HostConnection, name: str) -> None:
    _call(f"undefine network {name}", _net(conn, name).undefine)


_UPDATE = {
    "add": libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
    "modify": libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
    "delete": libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
}


def dhcp_host_update(conn: HostConnection, name: str, command: str, host: DhcpHost, *, ip_index: int = -1) -> None:
    """Add, change or remove a static DHCP entry, live (dnsmasq is told, nothing restarts) and in
    the persistent definition. A change is matched by MAC (or by name for an entry without one)."""
    net = _net(conn, name)
    flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    if _call(f"network {name}", net.isActive):
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
    if not _call(f"network {name}", net.isPersistent):
        flags &= ~libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    _call(f"{command} DHCP host {host.mac or host.name} on network {name}", net.update, _UPDATE[command],
          libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, ip_index, host.xml(), flags)  # fmt: skip


# --- NICs of domains ---------------------------------------------------------------------------------------
def _nic_element(domain_xml: str, mac: str) -> ET.Element:
    root = parse_xml(domain_xml)
    for nic in root.findall("./devices/interface"):
        el = nic.find("mac")
        if el is not None and el.get("address", "").lower() == mac.lower():
            return nic
    raise VirtError(f"the VM has no network interface with MAC {mac}")


def interface_set_network(conn: HostConnection, uuid: str, mac: str, network: str) -> bool:
    """Plug the NIC ``mac`` of a domain into virtual network ``network``: live on a running domain
    (the guest keeps its NIC, its link moves) and in its persistent definition. Returns whether it
    changed live."""
    dom = _call(f"domain {uuid}", conn.raw.lookupByUUIDString, uuid)
    running = bool(_call(f"domain {uuid}", dom.isActive))
    persistent = bool(_call(f"domain {uuid}", dom.isPersistent))
    xml = _call(f"domain {uuid}", dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE if persistent else 0)
    nic = _nic_element(xml, mac)
    nic.set("type", "network")
    for child in list(nic):  # what tied it to where it was; its MAC, model, address and link stay
        if child.tag in ("source", "target", "virtualport", "alias"):
            nic.remove(child)
    source = ET.SubElement(nic, "source")
    source.set("network", network)
    device = ET.tostring(nic, encoding="unicode")
    flags = 0
    if persistent:
        flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if running:
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    _call(f"move the NIC {mac} to network {network}", dom.updateDeviceFlags, device, flags)
    link = nic.find("link")
    if running and (link is None or link.get("state", "up") == "up"):
        # The guest does not notice its tap moved to another bridge: its link goes down and up
        # again, so its DHCP client asks the new network for an address.
        for state in ("down", "up"):
            if link is None:
                link = ET.SubElement(nic, "link")
            link.set("state", state)
            _call(f"set the link of NIC {mac} {state}", dom.updateDeviceFlags, ET.tostring(nic, encoding="unicode"),
                  libvirt.VIR_DOMAIN_AFFECT_LIVE)  # fmt: skip
            if state == "down":
                time.sleep(LINK_BOUNCE)
    return running


# --- events ----------------------------------------------------------------------------------------------
NETWORK_EVENTS = {
    libvirt.VIR_NETWORK_EVENT_DEFINED: "defined",
    libvirt.VIR_NETWORK_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_NETWORK_EVENT_STARTED: "started",
    libvirt.VIR_NETWORK_EVENT_STOPPED: "stopped",
}


@dataclass(frozen=True)
class NetworkEvent:
    name: str
    detail: str


def register_network_events(conn: HostConnection, callback: Callable[[NetworkEvent], None]) -> None:
    """Network lifecycle events of this connection go to ``callback`` (on the loop thread)."""

    def lifecycle(_conn, net, event, _detail, _opaque):
        callback(NetworkEvent(name=net.name(), detail=NETWORK_EVENTS.get(event, str(event))))

    raw = conn.raw
    try:
        callback_id = raw.networkEventRegisterAny(None, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE, lifecycle, None)
    except libvirt.libvirtError as exc:
        log.debug("%s does not send network events: %s", conn.uri, exc)
        return
    conn.on_deregister(lambda: raw.networkEventDeregisterAny(callback_id))


def add_timer(conn: HostConnection, seconds: float, callback: Callable[[], None]) -> None:
    """Call ``callback`` every ``seconds`` on the event-loop thread while the connection's events are
    registered: libvirt sends no event when dnsmasq hands out a lease, so leases are re-read."""
    timer = libvirt.virEventAddTimeout(int(seconds * 1000), lambda _timer, _opaque: callback(), None)
    conn.on_deregister(lambda: libvirt.virEventRemoveTimeout(timer))
