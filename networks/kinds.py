"""Network operations as job kinds: define (from a form per mode, or XML), start, stop, autostart,
delete, static DHCP entries (add, change, remove — live, nothing restarts), and moving a VM's NIC to
another network.

Each locks its network (by host and name, so one that does not exist yet can be locked), needs the
manage right on its host (moving a NIC: operate on the VM), checks what it can before libvirt is
called, and re-reads what it changed when it ends. A define that fails half-way undefines what it
defined, and says so.
"""

from __future__ import annotations

import ipaddress

from hosts.connections import host_connection
from jobs import kinds
from jobs.kinds import JobContext, Kind, Outcome, Subject
from virt import NotFound
from virt import network as vn
from vms.kinds import reread_vm, vm_subject
from vms.models import VM

from . import params as P
from .inventory import network_reread
from .models import Network
from .selectors import vms_on

QUEUE = "lifecycle"  # quick calls, like a VM's lifecycle


def network_subject(network: Network) -> Subject:
    host = network.host
    return Subject(noun="network", name=network.name, lock=f"network:{host.pk}:{network.name}", host=host,
                   label=f"network {network.name} on {host.name}")  # fmt: skip


def network_facts(network: Network, params: dict) -> dict:
    return {"network": network.name}


def reread_network(job) -> None:
    if job.host is not None:
        network_reread(host=job.host, name=job.params["network"], conn=host_connection(job.host))


def _host_ok(network: Network) -> str:
    if network.host.state != "connected":
        return f"its host {network.host.name} is {network.host.get_state_display().lower()}"
    return ""


# --- define ------------------------------------------------------------------------------------------------
def _overlap(network: Network, params: dict) -> str:
    """A subnet another network of the host has (libvirt checks the host's routes too, when it starts)."""
    mine = [ipaddress.ip_interface(c).network for c in (params.get("ipv4"), params.get("ipv6")) if c]
    for other in Network.objects.filter(host=network.host).exclude(name=network.name):
        for subnet in other.subnets:
            theirs = ipaddress.ip_network(subnet)
            if any(m.version == theirs.version and m.overlaps(theirs) for m in mine):
                return f"its subnet overlaps {subnet} of network {other.name} on {network.host.name}"
    return ""


def _check_define(network: Network, params: dict, **_) -> str:
    why = _host_ok(network)
    if why:
        return why
    if params["mode"] == "xml" and params["xml_name"] != network.name:
        return f"the XML names the network {params['xml_name']}, not {network.name}"
    if Network.objects.filter(host=network.host, name=network.name).exists():
        return f"{network.host.name} already has a network named {network.name}"
    if params.get("bridge") and params["mode"] in vn.ADDRESSED_MODES:
        taken = Network.objects.filter(host=network.host, bridge=params["bridge"]).first()
        if taken is not None:
            return f"network {taken.name} on {network.host.name} already uses the bridge {params['bridge']}"
    return _overlap(network, params)


def _define(ctx: JobContext) -> Outcome:
    p = ctx.params
    name = p["network"]
    xml = p["xml"] if p["mode"] == "xml" else vn.network_xml(P.spec_of(name, p))
    ctx.progress(10, "defining the network", record=True)
    info = vn.network_define(ctx.conn, xml)
    ctx.note(defined=True)
    done = ["defined"]
    if p["start"]:
        ctx.progress(50, "starting it", record=True)
        vn.network_start(ctx.conn, name)
        ctx.note(started=True)
        done.append("started")
    if p["autostart"]:
        vn.network_set_autostart(ctx.conn, name, True)
        done.append("set to start with the host")
    bridge = vn.network_info(ctx.conn, name).bridge or info.bridge
    return Outcome(f"network {name} {', '.join(done)}" + (f" (bridge {bridge})" if bridge else ""))


def _undo_define(job) -> str:
    facts = job.result or {}
    if not facts.get("defined") or job.host is None:
        return ""
    conn, name = host_connection(job.host), job.params["network"]
    try:
        if facts.get("started"):
            vn.network_stop(conn, name)
        vn.network_undefine(conn, name)
    except NotFound:
        return "the network it defined is gone already"
    return "undefined the network it had defined"


# --- start, stop, autostart, delete --------------------------------------------------------------------------
def _check_state(active: bool | None, why: str = ""):
    def check(network: Network, params: dict, **_) -> str:
        base = _host_ok(network)
        if base:
            return base
        if active is not None and network.active != active:
            return why or ("the network is running" if network.active else "the network is stopped")
        return ""

    return check


def _users_named(network: Network, *, running: bool) -> str:
    users = vms_on(network, running=running)
    names = sorted(vm.name for vm in users)
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return ", ".join(names[:10]) + more


def _check_stop(network: Network, params: dict, **_) -> str:
    return _check_state(True, why="the network is stopped already")(network, params) or (
        f"running VMs use it: {users}. Stop them or move their NICs first" if (
            users := _users_named(network, running=True)) and not params.get("force") else ""
    )  # fmt: skip


def _check_delete(network: Network, params: dict, **_) -> str:
    base = _host_ok(network)
    if base:
        return base
    users = _users_named(network, running=True)
    if users and not params.get("force"):
        return f"running VMs use it: {users}. Stop them or move their NICs first"
    return ""


def _simple(call, message: str):
    def handler(ctx: JobContext) -> Outcome:
        call(ctx.conn, ctx.params["network"])
        return Outcome(message)

    return handler


def _delete(ctx: JobContext) -> Outcome:
    name = ctx.params["network"]
    info = vn.network_info(ctx.conn, name)
    done = []
    if info.active:
        ctx.progress(30, "stopping it", record=True)
        vn.network_stop(ctx.conn, name)
        done.append("stopped")
    if info.persistent:
        vn.network_undefine(ctx.conn, name)
        done.append("undefined")
    return Outcome(f"network {name} {' and '.join(done)}")


# --- static DHCP entries ---------------------------------------------------------------------------------------
def _check_dhcp_host(network: Network, params: dict, **_) -> str:
    base = _host_ok(network)
    if base:
        return base
    if not network.addressed:
        return f"a {network.get_mode_display()} network has no DHCP of libvirt's"
    index, why = P.check_dhcp_host(network.ips, params)
    if why:
        return why
    if params["command"] != "add" and not any(
        h.get("mac") == params["mac"] for h in network.ips[index].get("hosts", ())
    ):
        return f"the network has no entry for {params['mac']}; add one"
    return ""


def _dhcp_host_facts(network: Network, params: dict) -> dict:
    index, _ = P.check_dhcp_host(network.ips, params)
    return {"network": network.name, "ip_index": index}


def _dhcp_host(ctx: JobContext) -> Outcome:
    p = ctx.params
    command = p["command"]
    if command == "delete":  # libvirt matches the entry it removes on all its attributes: as it has it now
        now = vn.network_info(ctx.conn, p["network"])
        host = next((h for h in now.dhcp_hosts if h.mac == p["mac"]), None)
        if host is None:
            return Outcome(f"{p['mac']} had no entry any more")
    else:
        host = vn.DhcpHost(mac=p["mac"], ip=p["ip"], name=p["name"])
    # the entry's <ip> by index: libvirt's -1 means "the first", wrong for an IPv6 entry
    vn.dhcp_host_update(ctx.conn, p["network"], command, host, ip_index=p["ip_index"])
    words = {"add": f"{p['mac']} now gets {p['ip']}", "modify": f"{p['mac']} now gets {p['ip']}",
             "delete": f"the entry of {p['mac']} is removed"}  # fmt: skip
    return Outcome(words[command] + " (live: nothing restarted)")


# --- a VM's NIC onto another network ---------------------------------------------------------------------------
def _check_nic(vm: VM, params: dict, **_) -> str:
    if vm.host is None or vm.host.state != "connected":
        return "its host is not connected"
    nic = next((n for n in vm.interfaces or () if n.get("mac") == params["mac"]), None)
    if nic is None:
        return f"{vm.name} has no NIC with MAC {params['mac']}"
    if nic.get("type") == "network" and nic.get("network") == params["network"]:
        return f"that NIC is on {params['network']} already"
    target = Network.objects.filter(host_id=vm.host_id, name=params["network"]).first()
    if target is None:
        return f"{vm.host.name} has no network named {params['network']}"
    if vm.state in ("running", "paused") and not target.active:
        return f"network {target.name} is stopped; start it first"
    return ""


def _nic(ctx: JobContext) -> Outcome:
    p = ctx.params
    live = vn.interface_set_network(ctx.conn, str(ctx.job.vm_uuid), p["mac"], p["network"])
    return Outcome(f"the NIC {p['mac']} is on network {p['network']}" + (" (live)" if live else ""))


def _after_nic(job) -> None:
    reread_vm(job)
    if job.host is not None:  # its lease moves with it
        from .inventory import refresh_leases

        refresh_leases(job.host, host_connection(job.host))


def _kind(name: str, label: str, handler, check, **extra) -> Kind:
    extra.setdefault("facts", network_facts)
    return Kind(name=name, label=label, handler=handler, subject=network_subject, lock="network", queue=QUEUE,
                right="manage", audit_action=name, check=check, after=reread_network, **extra)  # fmt: skip


for _kind_ in [
    _kind("network.define", "Define network", _define, _check_define, params=P.NetworkDefineParams,
          undo=_undo_define),
    _kind("network.start", "Start network", _simple(vn.network_start, "started"),
          _check_state(False, why="the network is running already")),
    _kind("network.stop", "Stop network", _simple(vn.network_stop, "stopped"), _check_stop, params=P.DeleteParams),
    _kind("network.autostart_on", "Autostart network",
          _simple(lambda c, n: vn.network_set_autostart(c, n, True), "starts with its host"), _check_state(None)),
    _kind("network.autostart_off", "Do not autostart network",
          _simple(lambda c, n: vn.network_set_autostart(c, n, False), "no longer starts with its host"),
          _check_state(None)),
    _kind("network.delete", "Delete network", _delete, _check_delete, params=P.DeleteParams),
    _kind("network.dhcp_host", "Change DHCP entry", _dhcp_host, _check_dhcp_host, params=P.DhcpHostParams,
          facts=_dhcp_host_facts),
    Kind(name="vm.nic_network", label="Move NIC", handler=_nic, subject=vm_subject, lock="vm", queue=QUEUE,
         right="operate", audit_action="vm.nic_network", check=_check_nic, params=P.NicNetworkParams,
         after=_after_nic),
]:  # fmt: skip
    kinds.register(_kind_)
