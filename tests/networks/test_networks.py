"""Networks against the libvirt test driver: the sync, define (per mode, from XML), start, stop,
autostart, delete, static DHCP entries (virNetworkUpdate), refusals, pages and API. What the test
driver cannot do (leases, moving a NIC) is tested on the lab's real hosts (tests/e2e/test_networks.py)."""

from __future__ import annotations

import libvirt
import pytest

from core.errors import Forbidden, ServiceError
from jobs.models import Job
from networks import inventory, services
from networks.models import Network
from networks.selectors import vm_nics, vms_on
from virt import VirtError
from vms.models import VM

WEB = "11111111-1111-4111-8111-111111111201"  # running, NIC 52:54:00:aa:00:01 on default
DB = "11111111-1111-4111-8111-111111111202"  # shut off, NICs on backend (link down) and on bridge br0


@pytest.fixture
def net_host(add_host):
    return add_host("nethost", "host-net.xml")


@pytest.fixture
def default(net_host):
    return Network.objects.get(host=net_host, name="default")


@pytest.fixture
def run(on_commit, admin_user):
    def start(request, **kwargs):
        kwargs.setdefault("user", admin_user)
        with on_commit():
            job = request(**kwargs)
        job.refresh_from_db()
        return job

    return start


def libvirt_net(host, name):
    from hosts.connections import host_connection

    return host_connection(host).raw.networkLookupByName(name)


def test_the_sync_reads_networks_their_addresses_and_the_vms_on_them(net_host, default):
    assert (default.mode, default.bridge, default.active, default.subnets, default.dhcp_ranges) == (
        "nat", "virbr0", True, ["192.168.122.0/24"], ["192.168.122.2 - 192.168.122.254"],
    )  # fmt: skip
    assert default.dhcp_hosts == [{"mac": "52:54:00:aa:00:01", "ip": "192.168.122.10", "name": "fixed",
                                   "family": "ipv4"}]  # fmt: skip
    backend = Network.objects.get(host=net_host, name="backend")
    assert (backend.mode, backend.subnets, backend.has_dhcp) == ("isolated", ["10.77.0.0/24"], False)
    assert [vm.name for vm in vms_on(default)] == ["web-net"] and [vm.name for vm in vms_on(backend)] == ["db-net"]
    assert vms_on(backend, running=True) == []
    nics = vm_nics(VM.objects.get(uuid=DB))
    assert [(n["mac"], n["type"], n["network"] or n["bridge"], n["model"], n["link"]) for n in nics] == [
        ("52:54:00:aa:00:02", "network", "backend", "e1000", "down"),
        ("52:54:00:aa:00:03", "bridge", "br0", "", "up"),
    ]
    assert nics[0]["network_row"] == backend and nics[0]["addresses"] == []  # shut off: no addresses


def test_a_driver_without_leases_is_asked_once(net_host):
    from hosts.connections import host_connection

    conn = host_connection(net_host)
    inventory.refresh_leases(net_host, conn)
    assert conn in inventory._no_leases  # the test driver has no virNetworkGetDHCPLeases


def test_a_nat_network_is_defined_started_and_set_to_autostart(net_host, run):
    job = run(services.network_define_request, host=net_host, name="web",
              params={"mode": "nat", "ipv4": "192.168.50.0/24", "bridge": "virbr50"})  # fmt: skip
    assert job.status == "succeeded", job.error
    assert "network web defined, started, set to start with the host" in job.message
    web = Network.objects.get(host=net_host, name="web")
    assert (web.mode, web.active, web.autostart, web.bridge) == ("nat", True, True, "virbr50")
    assert web.ips[0]["address"] == "192.168.50.1" and web.dhcp_ranges == ["192.168.50.2 - 192.168.50.254"]
    xml = libvirt_net(net_host, "web").XMLDesc(0)
    assert "<forward mode='nat'" in xml.replace('"', "'") and "192.168.50.254" in xml


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": "nat"}, "A NAT network needs an IPv4 subnet"),
        ({"mode": "nat", "ipv4": "192.168.50.1"}, "Give an IPv4 address with its prefix"),
        ({"mode": "nat", "ipv4": "192.168.50.300/24"}, "Give an address with its prefix"),
        ({"mode": "nat", "ipv4": "192.168.50.1/31"}, "between /8 and /30"),
        (
            {"mode": "nat", "ipv4": "192.168.50.1/24", "dhcp_start": "192.168.60.2", "dhcp_end": "192.168.60.9"},
            "192.168.60.2 is not in the network's subnet 192.168.50.0/24",
        ),
        (
            {"mode": "nat", "ipv4": "192.168.50.1/24", "dhcp_start": "192.168.50.90", "dhcp_end": "192.168.50.10"},
            "The range ends (192.168.50.10) before it starts",
        ),
        (
            {"mode": "nat", "ipv4": "192.168.50.100/24", "dhcp_start": "192.168.50.2", "dhcp_end": "192.168.50.200"},
            "includes the network's own address 192.168.50.100",
        ),
        ({"mode": "nat", "ipv4": "192.168.122.1/25"}, "its subnet overlaps 192.168.122.0/24 of network default"),
        ({"mode": "nat", "ipv4": "192.168.51.1/24", "bridge": "virbr0"}, "network default on nethost already uses"),
        ({"mode": "isolated", "ipv4": "10.1.0.1/24", "bridge": "a-bridge-name-too-long"}, "1 to 15 letters"),
        ({"mode": "isolated", "forward_dev": "eth0"}, "sends nothing out of the host"),
        ({"mode": "macvtap"}, "Give the host device"),
        ({"mode": "bridge", "bridge": "br0", "ipv4": "10.1.0.1/24"}, "has no address or DHCP of libvirt's"),
        ({"mode": "xml", "xml": "<network><name>web"}, "not well-formed"),
        ({"mode": "xml", "xml": "<pool><name>web</name></pool>"}, "describes a <pool>, not a <network>"),
        ({"mode": "xml", "xml": "<network><name>other</name></network>"}, "the XML names the network other, not web"),
        ({"mode": "bogus"}, "The mode must be one of nat, route, open, isolated, bridge, macvtap or xml"),
    ],
)
def test_bad_network_input_is_refused_before_libvirt(net_host, admin_user, params, message):
    before = len(libvirt_net(net_host, "default").connect().listAllNetworks(0))
    with pytest.raises(ServiceError, match=message.replace("(", "\\(").replace(")", "\\)")):
        services.network_define_request(host=net_host, name="web", params=params, user=admin_user)
    assert not Job.objects.exists() and len(libvirt_net(net_host, "default").connect().listAllNetworks(0)) == before


def test_a_bad_name_and_a_taken_name_are_refused(net_host, admin_user):
    with pytest.raises(ServiceError, match="A network name is 1 to 50 letters"):
        services.network_define_request(host=net_host, name="../x", params={"mode": "isolated"}, user=admin_user)
    with pytest.raises(ServiceError, match="nethost already has a network named default"):
        services.network_define_request(host=net_host, name="default", params={"mode": "isolated"}, user=admin_user)


def test_a_network_from_xml_takes_its_name_from_the_xml(net_host, run):
    xml = "<network><name>fromxml</name><ip address='10.88.0.1' prefix='24'><dhcp><range start='10.88.0.5' " \
          "end='10.88.0.50'/></dhcp></ip></network>"  # fmt: skip
    job = run(services.network_define_request, host=net_host, name="", params={"mode": "xml", "xml": xml,
                                                                               "autostart": False})  # fmt: skip
    assert job.status == "succeeded", job.error
    row = Network.objects.get(host=net_host, name="fromxml")
    assert (row.mode, row.active, row.autostart, row.dhcp_ranges) == (
        "isolated",
        True,
        False,
        ["10.88.0.5 - 10.88.0.50"],
    )


def test_a_define_that_fails_half_way_undefines_what_it_defined(net_host, run, monkeypatch):
    def refuse(conn, name):
        raise VirtError("internal error: Network is already in use by interface eth0")

    monkeypatch.setattr("virt.network.network_start", refuse)
    job = run(services.network_define_request, host=net_host, name="clash",
              params={"mode": "nat", "ipv4": "10.99.0.1/24"})  # fmt: skip
    assert job.status == "failed" and "already in use by interface eth0" in job.error
    assert "undefined the network it had defined" in job.message + job.error + str(job.result)
    with pytest.raises(libvirt.libvirtError):
        libvirt_net(net_host, "clash")
    assert not Network.objects.filter(name="clash").exists()


def test_stop_start_and_autostart(net_host, run):
    backend = Network.objects.get(host=net_host, name="backend")
    assert run(services.network_job_request, network=backend, action="stop").status == "succeeded"
    backend.refresh_from_db()
    assert not backend.active
    with pytest.raises(ServiceError, match="the network is stopped already"):
        run(services.network_job_request, network=backend, action="stop")
    assert run(services.network_job_request, network=backend, action="start").status == "succeeded"
    assert run(services.network_job_request, network=backend, action="autostart_on").status == "succeeded"
    backend.refresh_from_db()
    assert backend.active and backend.autostart and libvirt_net(net_host, "backend").autostart()


def test_a_network_running_vms_use_is_stopped_or_deleted_only_by_an_administrator_with_force(
    net_host, default, run, make_user
):
    with pytest.raises(ServiceError, match="running VMs use it: web-net"):
        run(services.network_job_request, network=default, action="delete")
    with pytest.raises(ServiceError, match="running VMs use it: web-net"):
        run(services.network_job_request, network=default, action="stop")
    operator = make_user("op", role="operator")
    with pytest.raises(Forbidden, match="Only administrators"):
        services.network_job_request(network=default, action="delete", params={"force": "1"}, user=operator)
    job = run(services.network_job_request, network=default, action="delete", params={"force": True})
    assert job.status == "succeeded" and job.message == "network default stopped and undefined"
    assert not Network.objects.filter(pk=default.pk).exists()


def test_static_dhcp_entries_are_added_changed_and_removed_live(net_host, default, run):
    job = run(services.dhcp_host_request, network=default,
              params={"mac": "52:54:00:AA:00:09", "ip": "192.168.122.20", "name": "db"})  # fmt: skip
    assert job.status == "succeeded", job.error
    assert "52:54:00:aa:00:09 now gets 192.168.122.20 (live: nothing restarted)" in job.message
    default.refresh_from_db()
    assert {"mac": "52:54:00:aa:00:09", "ip": "192.168.122.20", "name": "db", "family": "ipv4"} in default.dhcp_hosts
    default.refresh_from_db()
    job = run(services.dhcp_host_request, network=default,
              params={"command": "modify", "mac": "52:54:00:aa:00:09", "ip": "192.168.122.21", "name": "db"})  # fmt: skip
    assert job.status == "succeeded", job.error
    default.refresh_from_db()
    assert "192.168.122.21" in libvirt_net(net_host, "default").XMLDesc(0)
    job = run(services.dhcp_host_request, network=default, params={"command": "delete", "mac": "52:54:00:aa:00:09"})
    assert job.status == "succeeded", job.error
    default.refresh_from_db()
    assert [h["mac"] for h in default.dhcp_hosts] == ["52:54:00:aa:00:01"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mac": "52:54:00:aa:00:09", "ip": "10.0.0.5"}, "10.0.0.5 is in none of the network's subnets"),
        ({"mac": "52:54:00:aa:00:09", "ip": "192.168.122.10"}, "192.168.122.10 is already given to 52:54:00:aa:00:01"),
        ({"mac": "52:54:00:aa:00:01", "ip": "192.168.122.30"}, "already has an entry"),
        ({"mac": "52:54:00:aa:00:09", "ip": "192.168.122.1"}, "the network's own address"),
        ({"mac": "01:00:5e:00:00:01", "ip": "192.168.122.30"}, "multicast"),
        ({"mac": "nope", "ip": "192.168.122.30"}, "Give a MAC address"),
        ({"mac": "52:54:00:aa:00:09"}, "Give the address this MAC always gets"),
        ({"command": "modify", "mac": "52:54:00:aa:00:09", "ip": "192.168.122.30"}, "has no entry for"),
        ({"command": "delete", "mac": "52:54:00:aa:00:09"}, "has no entry for 52:54:00:aa:00:09"),
    ],
)
def test_bad_dhcp_entries_are_refused(default, admin_user, params, message):
    with pytest.raises(ServiceError, match=message):
        services.dhcp_host_request(network=default, params=params, user=admin_user)
    assert not Job.objects.exists()


def test_moving_a_nic_is_checked_before_libvirt(net_host, admin_user):
    web = VM.objects.get(uuid=WEB)
    with pytest.raises(ServiceError, match="that NIC is on default already"):
        services.nic_network_request(vm=web, mac="52:54:00:aa:00:01", network="default", user=admin_user)
    with pytest.raises(ServiceError, match="nethost has no network named nowhere"):
        services.nic_network_request(vm=web, mac="52:54:00:aa:00:01", network="nowhere", user=admin_user)
    with pytest.raises(ServiceError, match="web-net has no NIC with MAC 52:54:00:aa:00:99"):
        services.nic_network_request(vm=web, mac="52:54:00:aa:00:99", network="backend", user=admin_user)


def test_network_events_reach_the_inventory(net_host):
    """A network defined behind Virtfleet's back shows up at the next re-read of its name."""
    from hosts.connections import host_connection

    conn = host_connection(net_host)
    conn.raw.networkDefineXML("<network><name>behind</name><ip address='10.66.0.1' prefix='24'/></network>")
    inventory.network_reread(host=net_host, name="behind", conn=conn)
    assert Network.objects.get(host=net_host, name="behind").active is False
    conn.raw.networkLookupByName("behind").undefine()
    inventory.network_reread(host=net_host, name="behind", conn=conn)
    assert not Network.objects.filter(host=net_host, name="behind").exists()


def test_the_pages_show_networks_and_explain_bad_input(net_host, default, admin_client):
    page = admin_client.get("/networks/")
    assert page.status_code == 200 and b"virbr0" in page.content and b"192.168.122.0/24" in page.content
    assert b"No network matches these filters" in admin_client.get("/networks/?q=zzz").content
    assert admin_client.get("/networks/?state=inactive&mode=bogus&host=x").status_code == 200
    detail = admin_client.get(f"/networks/{default.pk}/")
    assert detail.status_code == 200 and b"web-net" in detail.content and b"52:54:00:aa:00:01" in detail.content
    assert admin_client.get("/networks/999999/").status_code == 404
    form = admin_client.post(f"/networks/hosts/{net_host.pk}/new/", {"name": "x", "mode": "nat", "ipv4": "10.1.2.3"})
    assert form.status_code == 200 and b"Give an IPv4 address with its prefix" in form.content
    assert not Job.objects.exists()
    host_page = admin_client.get(f"/hosts/{net_host.pk}/")
    assert b"Virtual networks" in host_page.content and b"+ New network" in host_page.content
    vm_page = admin_client.get(f"/vms/{WEB}/")
    assert b"Network interfaces" in vm_page.content and b"52:54:00:aa:00:01" in vm_page.content
    bad = admin_client.post(f"/networks/{default.pk}/dhcp-hosts/", {"mac": "zz", "ip": "1"}, follow=True)
    assert bad.status_code == 200 and b"Give a MAC address" in bad.content


def test_the_api_lists_networks_with_leases_and_vms_and_refuses_bad_input(net_host, default, admin_client):
    listed = admin_client.get(f"/api/networks/?host={net_host.pk}").json()
    assert sorted(n["name"] for n in listed["results"]) == ["backend", "default"]
    one = admin_client.get(f"/api/networks/{default.pk}/").json()
    assert one["vms"] == [{"uuid": WEB, "name": "web-net", "state": "running"}] and one["leases"] == []
    bad = admin_client.post("/api/networks/", {"host": net_host.pk, "name": "x", "params": {"mode": "nat"}},
                            content_type="application/json")  # fmt: skip
    assert bad.status_code == 400 and "needs an IPv4 subnet" in bad.json()["error"]
    nics = admin_client.get(f"/api/vms/{DB}/nics/").json()
    assert [n["mac"] for n in nics] == ["52:54:00:aa:00:02", "52:54:00:aa:00:03"]
    moved = admin_client.post(f"/api/vms/{WEB}/nics/", {"mac": "52:54:00:aa:00:01", "network": "nowhere"},
                              content_type="application/json")  # fmt: skip
    assert moved.status_code == 400 and "has no network named nowhere" in moved.json()["error"]
