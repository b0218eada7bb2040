"""Networks in Chromium against the lab's real hosts: an isolated network with DHCP made through its
form, a static DHCP entry added live, a guest's NIC moved onto it, the guest booted, and its lease
and address on the VM page and the network page — checked against `virsh net-dhcp-leases`; and
libvirt's own refusal of a subnet another host's bridge already routes, shown in its words, with
nothing left behind."""

from __future__ import annotations

import ipaddress
import re

import libvirt
import pytest

import lab
from jobs.models import Job
from networks.models import Lease, Network
from tests.e2e.conftest import screenshot, virsh, wait_for

pytestmark = [pytest.mark.e2e]


def _guest_back_on_lab(lab_host, guest: str) -> None:
    """The guest shut off and its NIC on the lab network again, as lab.up left it."""
    conn = libvirt.open(lab_host.unix_uri)
    try:
        dom = conn.lookupByName(guest)
        if dom.isActive():
            dom.destroy()
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        fixed = re.sub(r"<source network='[^']*'", f"<source network='{lab.LAB_NETWORK}'", xml)
        if fixed != xml:
            conn.defineXML(fixed)
    finally:
        conn.close()


@pytest.fixture
def net_lab(lab_hosts, lab_state):
    """No network of these tests on the lab hosts, and lab1's second guest on the lab network, before and after."""
    guest = lab_state.real_hosts[0].guests[1].name

    def clean():
        _guest_back_on_lab(lab_state.real_hosts[0], guest)
        for lab_host in lab_state.real_hosts:
            for name in virsh(lab_host, "net-list", "--all", "--name").split():
                if name.startswith(f"{lab.LAB_NETWORK}-x"):
                    virsh(lab_host, "net-destroy", name, check=False)
                    virsh(lab_host, "net-undefine", name, check=False)

    clean()
    yield lab_hosts
    clean()


def _leases(lab_host, network: str) -> list[tuple[str, str, str]]:
    """(MAC, address, host name) of each lease, as virsh lists them."""
    found = []
    for line in virsh(lab_host, "net-dhcp-leases", network).splitlines():
        parts = line.split()
        if len(parts) >= 6 and re.match(r"^[0-9a-f:]{17}$", parts[2]):
            found.append((parts[2], parts[4].split("/")[0], parts[5]))
    return found


def test_a_guest_on_a_new_isolated_network_gets_its_static_address_and_the_pages_show_it(
    page, stack, net_lab, lab_state
):
    lab1_host, lab1 = net_lab[0], lab_state.real_hosts[0]
    extra = lab.free_network(lab1)
    subnet = ipaddress.ip_network(extra.subnet)
    guest = lab1.guests[1]
    mac = lab.guest_mac(guest.uuid)
    fixed_ip = str(ipaddress.ip_address(extra.dhcp_start) + 3)

    # 1. the network, through its form (the isolated mode shows only what it needs)
    page.goto(f"{stack.url}/hosts/{lab1_host.pk}/")
    page.click('[data-action="new-network"]')
    page.fill("#id_name", extra.name)
    page.select_option("#id_mode", "isolated")
    assert page.locator('[data-net-field="macvtap_mode"]').is_hidden()
    assert page.locator('[data-net-field="forward_dev"]').is_hidden()
    page.fill("#id_ipv4", f"{extra.gateway}/{subnet.prefixlen}")
    page.fill("#id_dhcp_start", extra.dhcp_start)
    page.fill("#id_dhcp_end", extra.dhcp_end)
    page.fill("#id_bridge", extra.bridge)
    page.click('[data-action="define-network"]')
    page.wait_for_url(f"**/hosts/{lab1_host.pk}/")
    row = page.locator("#host-networks tr", has_text=extra.name)
    row.locator("text=Active").wait_for(timeout=20000)  # live: the job's end re-reads the network
    assert extra.bridge in row.inner_text() and extra.subnet in row.inner_text()
    assert extra.name in virsh(lab1, "net-list", "--name")

    # 2. a static DHCP entry for the guest, added live on the network's page
    row.get_by_role("link", name=extra.name).click()
    page.wait_for_url("**/networks/*/")
    form = page.locator("#dhcp-host-form")
    form.locator("[name=mac]").fill(mac)
    form.locator("[name=ip]").fill(fixed_ip)
    form.locator("[name=name]").fill(guest.name)
    form.locator('[data-action="add-dhcp-host"]').click()
    page.locator("#network-dhcp-hosts tr", has_text=mac).wait_for(timeout=20000)
    assert fixed_ip in virsh(lab1, "net-dumpxml", extra.name)  # in dnsmasq's config, no restart

    # 3. the guest's NIC onto it (shut off: its definition changes), then it boots
    page.goto(f"{stack.url}/vms/{guest.uuid}/")
    nic = page.locator("#vm-nics tr", has_text=mac)
    nic.locator("select[name=network]").select_option(extra.name)
    nic.locator("button[type=submit]").click()
    wait_for(lambda: extra.name in virsh(lab1, "domiflist", guest.name), 20, message="the NIC on the new network")
    page.locator("#vm-nics tr", has_text=extra.name).wait_for(timeout=20000)
    virsh(lab1, "start", guest.name)
    lab.wait_guest_ready(lab1, guest.name, timeout=40)

    # 4. the lease, as libvirt lists it, reaches the VM page without a reload
    leases = wait_for(lambda: _leases(lab1, extra.name), 60, message="a DHCP lease for the guest")
    assert leases == [(mac, fixed_ip, guest.name)]
    addresses = page.locator(f'#vm-nics tr[data-mac="{mac}"] [data-field="addresses"]')
    addresses.locator(f"text={fixed_ip}/{subnet.prefixlen}").wait_for(timeout=30000)
    assert "DHCP lease" in addresses.inner_text()
    screenshot(page, "networks-vm-nics")
    network = Network.objects.get(host=lab1_host, name=extra.name)
    assert Lease.objects.get(network=network).hostname == guest.name

    # 5. the network's page lists the lease with the VM it belongs to
    page.goto(f"{stack.url}/networks/{network.pk}/")
    lease_row = page.locator("#network-leases tr", has_text=mac)
    assert fixed_ip in lease_row.inner_text() and lease_row.get_by_role("link", name=guest.name).is_visible()
    assert page.locator("#network-vms", has_text=guest.name).is_visible()
    screenshot(page, "networks-detail")

    # 6. deleting it is refused while the running guest uses it, naming the guest
    page.once("dialog", lambda d: d.accept())
    page.click('[data-action="delete"]')
    page.wait_for_selector(".messages .alert-error", timeout=10000)
    assert f"running VMs use it: {guest.name}" in page.inner_text(".messages")
    assert extra.name in virsh(lab1, "net-list", "--name")

    # 7. moved live back to the lab network: its link drops and comes back, and the guest asks there
    page.goto(f"{stack.url}/vms/{guest.uuid}/")
    nic = page.locator("#vm-nics tr", has_text=mac)
    nic.locator("select[name=network]").select_option(lab.LAB_NETWORK)
    nic.locator("button[type=submit]").click()

    def on_lab_network() -> list:
        return [lease for lease in _leases(lab1, lab.LAB_NETWORK) if lease[0] == mac]

    (lab_lease,) = wait_for(on_lab_network, 60, message="a lease on the lab network after the live move")
    assert ipaddress.ip_address(lab_lease[1]) in ipaddress.ip_network(lab1.network.subnet)
    addresses = page.locator(f'#vm-nics tr[data-mac="{mac}"] [data-field="addresses"]')
    addresses.locator(f"text={lab_lease[1]}/").wait_for(timeout=30000)
    assert fixed_ip not in addresses.inner_text()  # the old network's lease is not shown for it any more


def test_libvirts_refusal_of_a_subnet_in_use_is_shown_in_its_words_and_nothing_is_left(page, stack, net_lab, lab_state):
    """lab2's lab network routes its subnet on this machine (one network namespace): lab1's libvirt
    refuses a network on the same subnet when it starts it; the define is undone."""
    lab1_host, lab1, lab2 = net_lab[0], lab_state.real_hosts[0], lab_state.real_hosts[1]
    taken = lab2.network
    page.goto(f"{stack.url}/networks/hosts/{lab1_host.pk}/new/")
    page.fill("#id_name", "lab-x15")
    page.select_option("#id_mode", "isolated")
    page.fill("#id_ipv4", f"{taken.gateway}/24")
    page.fill("#id_bridge", lab.extra_network(lab1, 15).bridge)
    page.click('[data-action="define-network"]')
    page.wait_for_url(f"**/hosts/{lab1_host.pk}/")
    job = wait_for(lambda: Job.objects.filter(kind="network.define", status="failed").first(), 30,
                   message="the define job failed")  # fmt: skip
    assert "already in use by interface" in job.error and taken.bridge in job.error
    assert "undefined the network it had defined" in job.error
    assert "lab-x15" not in virsh(lab1, "net-list", "--all", "--name")
    assert not Network.objects.filter(host=lab1_host, name="lab-x15").exists()
    page.goto(f"{stack.url}/jobs/{job.pk}/")
    assert "already in use by interface" in page.inner_text("body")
    screenshot(page, "networks-refused")

    # our own check comes first for a subnet of a network the host already has
    page.goto(f"{stack.url}/networks/hosts/{lab1_host.pk}/new/")
    page.fill("#id_name", "lab-x14")
    page.select_option("#id_mode", "isolated")
    page.fill("#id_ipv4", f"{lab1.network.gateway}/24")
    page.click('[data-action="define-network"]')
    error = page.locator(".alert-error, .error-text").first
    error.wait_for()
    assert f"overlaps {lab1.network.subnet} of network lab" in page.inner_text("#network-form")
