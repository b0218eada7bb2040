"""What network operations take, checked before libvirt is called: names, bridge and device names,
subnets and DHCP ranges, MAC addresses, pasted XML, and the option serializers of the network kinds."""

from __future__ import annotations

import ipaddress
import re

from rest_framework import serializers

from jobs.params import Flag
from virt import network as vn

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")
IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")  # Linux: at most 15 bytes (IFNAMSIZ - 1)
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
MAX_XML = 64 * 1024


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME.match(name):
        raise serializers.ValidationError(
            "A network name is 1 to 50 letters, digits, dots, dashes or underscores, starting with a letter or digit."
        )
    return name


def check_ifname(value: str, field: str, what: str) -> str:
    value = (value or "").strip()
    if not IFNAME.match(value) or value in ("lo", "all", "default"):
        raise serializers.ValidationError({field: f"Give {what}: 1 to 15 letters, digits, dots, dashes or colons."})
    return value


def check_mac(value: str, field: str = "mac") -> str:
    mac = (value or "").strip().lower().replace("-", ":")
    if not MAC.match(mac):
        raise serializers.ValidationError({field: "Give a MAC address such as 52:54:00:12:34:56."})
    if int(mac[:2], 16) & 1:
        raise serializers.ValidationError({field: f"{mac} is a multicast address; a NIC needs a unicast one."})
    return mac


def _interface(value: str, field: str, version: int) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """The network's own address and prefix from "192.168.100.1/24", or from the subnet
    "192.168.100.0/24" (its first address then)."""
    example = "192.168.100.1/24" if version == 4 else "fd00:100::1/64"
    text = (value or "").strip()
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise serializers.ValidationError({field: f"Give an address with its prefix, such as {example}."}) from None
    if iface.version != version or "/" not in text:
        raise serializers.ValidationError({field: f"Give an IPv{version} address with its prefix, such as {example}."})
    net = iface.network
    if version == 4 and not 8 <= net.prefixlen <= 30:
        raise serializers.ValidationError({field: "The prefix must be between /8 and /30."})
    if version == 6 and not 48 <= net.prefixlen <= 126:
        raise serializers.ValidationError(
            {field: "The prefix must be between /48 and /126 (libvirt's DHCPv6 wants /64)."}
        )
    if net.is_loopback or net.is_multicast or iface.ip.is_link_local:
        raise serializers.ValidationError({field: f"{net} is not a subnet guests can use."})
    if iface.ip == net.network_address:  # a subnet was given: the network takes its first address
        iface = ipaddress.ip_interface(f"{net.network_address + 1}/{net.prefixlen}")
    if version == 4 and iface.ip == net.broadcast_address:
        raise serializers.ValidationError({field: f"{iface.ip} is the broadcast address of {net}."})
    return iface


def _in(value: str, field: str, iface, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        ip = ipaddress.ip_address((value or "").strip())
    except ValueError:
        raise serializers.ValidationError({field: f"Give the {what} as an address of {iface.network}."}) from None
    if ip not in iface.network:
        raise serializers.ValidationError({field: f"{ip} is not in the network's subnet {iface.network}."})
    if ip == iface.ip:
        raise serializers.ValidationError({field: f"{ip} is the network's own address (the guests' gateway)."})
    if iface.version == 4 and ip in (iface.network.network_address, iface.network.broadcast_address):
        raise serializers.ValidationError({field: f"{ip} is not an address a guest can have in {iface.network}."})
    return ip


def dhcp_range(iface, start: str, end: str, prefix: str) -> tuple[str, str]:
    """The DHCP range, checked; empty start and end: every address after the network's own."""
    net = iface.network
    if not start and not end:
        first = iface.ip + 1 if iface.ip + 1 in net else net.network_address + 1
        last = (
            net.broadcast_address - 1
            if iface.version == 4
            else net.network_address + min(net.num_addresses - 1, 0xFFFF)
        )
        if first > last:
            raise serializers.ValidationError({f"{prefix}_start": f"{net} has no room for a DHCP range."})
        return str(first), str(last)
    s = _in(start, f"{prefix}_start", iface, "first address of the DHCP range")
    e = _in(end, f"{prefix}_end", iface, "last address of the DHCP range")
    if s > e:
        raise serializers.ValidationError({f"{prefix}_end": f"The range ends ({e}) before it starts ({s})."})
    if s <= iface.ip <= e:
        raise serializers.ValidationError(
            {f"{prefix}_start": f"The range {s}-{e} includes the network's own address {iface.ip}."}
        )
    return str(s), str(e)


# --- options of the network kinds ----------------------------------------------------------------------
class NetworkDefineParams(serializers.Serializer):
    """A new network: from the form of its mode, or from XML (``xml``), checked before libvirt sees it."""

    mode = serializers.ChoiceField(choices=[*vn.MODES, "xml"], default="nat", error_messages={
        "invalid_choice": f"The mode must be one of {', '.join(vn.MODES)} or xml."})  # fmt: skip
    bridge = serializers.CharField(required=False, allow_blank=True, default="",
                                   help_text="nat/route/open/isolated: its bridge's name (empty: libvirt picks "
                                             "virbrN); bridge: the host bridge to use")  # fmt: skip
    forward_dev = serializers.CharField(required=False, allow_blank=True, default="",
                                        help_text="nat/route: the host device traffic leaves by (empty: any); "
                                                  "macvtap: the host device")  # fmt: skip
    macvtap_mode = serializers.ChoiceField(choices=list(vn.MACVTAP_MODES), default="bridge")
    ipv4 = serializers.CharField(required=False, allow_blank=True, default="",
                                 help_text="the network's address and prefix, e.g. 192.168.100.1/24")  # fmt: skip
    dhcp = Flag(default=True, help_text="hand out addresses by DHCP")
    dhcp_start = serializers.CharField(required=False, allow_blank=True, default="")
    dhcp_end = serializers.CharField(required=False, allow_blank=True, default="")
    ipv6 = serializers.CharField(required=False, allow_blank=True, default="", help_text="e.g. fd00:100::1/64")
    dhcp6 = Flag(help_text="DHCPv6 on the IPv6 subnet")
    dhcp6_start = serializers.CharField(required=False, allow_blank=True, default="")
    dhcp6_end = serializers.CharField(required=False, allow_blank=True, default="")
    domain = serializers.CharField(required=False, allow_blank=True, default="",
                                   help_text="DNS domain the network's guests are named in")  # fmt: skip
    mtu = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=68, max_value=65535)
    xml = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False,
                                help_text="mode xml: the whole <network> definition")  # fmt: skip
    start = Flag(default=True)
    autostart = Flag(default=True)

    def validate(self, data):
        mode = data["mode"]
        if mode == "xml":
            xml = data["xml"]
            if len(xml) > MAX_XML:
                raise serializers.ValidationError({"xml": f"The XML is larger than {MAX_XML // 1024} KiB."})
            try:
                data["xml_name"] = vn.xml_name(xml)
            except ValueError as exc:
                raise serializers.ValidationError({"xml": f"{str(exc)[:300].capitalize()}."}) from None
            return data
        data["xml"] = ""
        if mode == "bridge":
            data["bridge"] = check_ifname(data["bridge"], "bridge", "the host bridge's name, such as br0")
            return self._no_addresses(data, mode)
        if mode == "macvtap":
            data["forward_dev"] = check_ifname(data["forward_dev"], "forward_dev", "the host device, such as eth0")
            return self._no_addresses(data, mode)
        if data["bridge"]:
            data["bridge"] = check_ifname(data["bridge"], "bridge", "a bridge name, such as virbr10")
        if data["forward_dev"]:
            if mode not in ("nat", "route"):
                raise serializers.ValidationError({"forward_dev": f"A{'n' if mode == 'isolated' else ''} {mode} "
                                                                  "network sends nothing out of the host."})  # fmt: skip
            data["forward_dev"] = check_ifname(data["forward_dev"], "forward_dev", "the host device, such as eth0")
        if data["domain"] and not DNS_NAME.match(data["domain"]):
            raise serializers.ValidationError({"domain": "Give a DNS domain, such as lab.example."})
        if not data["ipv4"] and not data["ipv6"]:
            if mode in ("route", "open"):
                raise serializers.ValidationError(
                    {"ipv4": f"A {mode} network needs a subnet, such as 192.168.100.1/24."}
                )
            if mode == "nat":
                raise serializers.ValidationError(
                    {"ipv4": "A NAT network needs an IPv4 subnet, such as 192.168.100.1/24."}
                )
        if data["ipv4"]:
            iface = _interface(data["ipv4"], "ipv4", 4)
            data["ipv4"] = str(iface)
            data["dhcp_start"], data["dhcp_end"] = (
                dhcp_range(iface, data["dhcp_start"], data["dhcp_end"], "dhcp") if data["dhcp"] else ("", "")
            )
        else:
            data["dhcp_start"] = data["dhcp_end"] = ""
        if data["ipv6"]:
            iface6 = _interface(data["ipv6"], "ipv6", 6)
            data["ipv6"] = str(iface6)
            data["dhcp6_start"], data["dhcp6_end"] = (
                dhcp_range(iface6, data["dhcp6_start"], data["dhcp6_end"], "dhcp6") if data["dhcp6"] else ("", "")
            )
        else:
            data["dhcp6_start"] = data["dhcp6_end"] = ""
        return data

    def _no_addresses(self, data, mode):
        label = vn.MODE_LABELS[mode]
        for field in ("ipv4", "ipv6", "dhcp_start", "domain"):
            if data.get(field):
                raise serializers.ValidationError(
                    {field: f"A {label} network has no address or DHCP of libvirt's: the guests are on the host's LAN."}
                )
        data["dhcp"] = data["dhcp6"] = False
        if mode == "bridge":
            data["forward_dev"] = ""
        return data


def spec_of(name: str, data: dict) -> vn.NetworkSpec:
    return vn.NetworkSpec(name=name, mode=data["mode"], bridge=data["bridge"], forward_dev=data["forward_dev"],
                          macvtap_mode=data["macvtap_mode"], ipv4=data["ipv4"], dhcp_start=data["dhcp_start"],
                          dhcp_end=data["dhcp_end"], ipv6=data["ipv6"], dhcp6_start=data["dhcp6_start"],
                          dhcp6_end=data["dhcp6_end"], domain=data["domain"], mtu=data["mtu"] or 0)  # fmt: skip


class DeleteParams(serializers.Serializer):
    force = Flag(help_text="delete even though running VMs use it (administrators only)")


class DhcpHostParams(serializers.Serializer):
    """A static DHCP entry: this MAC gets this address (and this host name)."""

    command = serializers.ChoiceField(choices=["add", "modify", "delete"], default="add")
    mac = serializers.CharField(max_length=32)
    ip = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=253)

    def validate(self, data):
        data["mac"] = check_mac(data["mac"])
        if data["name"] and not DNS_NAME.match(data["name"]):
            raise serializers.ValidationError({"name": "Give a host name: letters, digits and dashes."})
        if data["command"] != "delete" and not data["ip"]:
            raise serializers.ValidationError({"ip": "Give the address this MAC always gets."})
        if data["ip"]:
            try:
                data["ip"] = str(ipaddress.ip_address(data["ip"].strip()))
            except ValueError:
                raise serializers.ValidationError({"ip": "Give an IP address, such as 192.168.100.50."}) from None
        return data


def check_dhcp_host(ips: list[dict], data: dict) -> tuple[int, str]:
    """The index of the network's <ip> the entry belongs to, or why it cannot be added."""
    want = ipaddress.ip_address(data["ip"]) if data["ip"] else None
    for index, ip in enumerate(ips):
        iface = ipaddress.ip_interface(f"{ip['address']}/{ip['prefix']}")
        if want is None:
            if any(h.get("mac") == data["mac"] for h in ip.get("hosts", ())):
                return index, ""
            continue
        if want.version != iface.version or want not in iface.network:
            continue
        if not ip.get("dhcp_start"):
            return index, f"the subnet {iface.network} has no DHCP"
        try:
            _in(str(want), "ip", iface, "address")
        except serializers.ValidationError as exc:
            detail = next(iter(exc.detail.values()))
            return index, str(detail[0] if isinstance(detail, list) else detail).rstrip(".")
        for other in ip.get("hosts", ()):
            if other.get("ip") == str(want) and other.get("mac") != data["mac"]:
                return index, f"{want} is already given to {other.get('mac') or other.get('name')}"
            if data["command"] == "add" and other.get("mac") == data["mac"]:
                return index, f"{data['mac']} already has an entry ({other.get('ip')}); change it instead"
        return index, ""
    if want is None:
        return -1, f"the network has no entry for {data['mac']}"
    subnets = ", ".join(str(ipaddress.ip_interface(f"{ip['address']}/{ip['prefix']}").network) for ip in ips)
    return -1, f"{want} is in none of the network's subnets ({subnets or 'it has none'})"


class NicNetworkParams(serializers.Serializer):
    """Move a NIC of a VM (by MAC) to another virtual network of its host."""

    mac = serializers.CharField(max_length=32)
    network = serializers.CharField(max_length=64)

    def validate(self, data):
        data["mac"] = check_mac(data["mac"])
        data["network"] = check_name(data["network"])
        return data
