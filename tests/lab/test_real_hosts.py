"""Real lab hosts: libvirtd + QEMU/TCG guests that boot, answer ACPI and migrate."""

from __future__ import annotations

import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

import lab
from lab.images import BANNER

pytestmark = pytest.mark.lab


def _xml(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - XML from the lab's own libvirtd


def _wait_inactive(dom: libvirt.virDomain, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while dom.isActive():
        assert time.monotonic() < deadline, f"{dom.name()} still running after {timeout}s"
        time.sleep(0.05)


def test_real_hosts_answer_on_tcp_and_unix_socket_with_distinct_host_uuids(running_lab) -> None:
    seen = set()
    for host in running_lab.real_hosts:
        for uri in (host.uri, host.unix_uri):
            conn = libvirt.open(uri)
            try:
                caps = _xml(conn.getCapabilities())
                assert caps.findtext("host/uuid") == host.host_uuid, uri
                assert conn.getType() == "QEMU"
            finally:
                conn.close()
        seen.add(host.host_uuid)
    assert len(seen) == 2


def test_each_real_host_has_two_guests_and_only_the_first_runs(running_lab) -> None:
    for host in running_lab.real_hosts:
        states = lab.domain_states(host)
        assert states == {f"{host.name}-vm1": "running", f"{host.name}-vm2": "shutoff"}


def test_guests_have_the_recorded_distinct_uuids_and_the_tiny_tcg_config(running_lab) -> None:
    uuids = set()
    for host in running_lab.real_hosts:
        conn = libvirt.open(host.uri)
        try:
            for guest in host.guests:
                dom = conn.lookupByName(guest.name)
                assert dom.UUIDString() == guest.uuid
                xml = _xml(dom.XMLDesc())
                assert xml.get("type") == "qemu"
                assert xml.findtext("memory") == str(128 * 1024)
                # libvirt keeps only what it accepted: the TCG translation cache limit.
                assert xml.find("features/tcg/tb-cache") is not None
                assert xml.find("features/acpi") is not None
                assert xml.findtext("os/cmdline") == "console=tty0 console=ttyS0 quiet"
                # one disk: the lab pool's ISO, read-only (the same path on every host: migrations copy nothing)
                (disk,) = xml.findall("devices/disk")
                assert disk.get("device") == "cdrom" and disk.find("readonly") is not None
                assert disk.find("source").get("pool") == "lab" and disk.find("source").get("volume") == "lab-boot.iso"
                assert xml.find("devices/interface/source").get("network") == "lab"
                uuids.add(guest.uuid)
        finally:
            conn.close()
    assert len(uuids) == 4


def test_started_guests_print_the_ready_banner_on_the_serial_console(running_lab) -> None:
    for host in running_lab.real_hosts:
        guest = f"{host.name}-vm1"
        lab.wait_guest_ready(host, guest, timeout=60)
        assert BANNER.format(name=guest) in Path(host.serial_log(guest)).read_text()
        # the shell prompt, with the guest's hostname: printed just after the banner
        deadline = time.monotonic() + 10
        while f"{guest}:/#" not in Path(host.serial_log(guest)).read_text():
            assert time.monotonic() < deadline, f"{guest} printed no shell prompt after its banner"
            time.sleep(0.1)


def test_running_guest_serves_vnc_on_loopback_in_the_hosts_range(running_lab) -> None:
    host = running_lab.host("lab1")
    conn = libvirt.open(host.uri)
    try:
        xml = _xml(conn.lookupByName("lab1-vm1").XMLDesc())
    finally:
        conn.close()
    graphics = xml.find("devices/graphics")
    port = int(graphics.get("port"))
    assert host.vnc_ports[0] <= port <= host.vnc_ports[1]
    assert graphics.get("listen") == "127.0.0.1"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        assert s.recv(12).startswith(b"RFB 003.")


def test_acpi_shutdown_through_libvirt_powers_the_guest_off(running_lab) -> None:
    host = running_lab.host("lab1")
    conn = libvirt.open(host.uri)
    try:
        dom = conn.lookupByName("lab1-vm2")
        dom.create()
        # An ACPI request sent before the guest's acpid runs is lost: wait for the banner.
        lab.wait_guest_ready(host, "lab1-vm2", timeout=60)
        dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        _wait_inactive(dom, timeout=30)
        assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN]
    finally:
        conn.close()
    assert "ACPI power button, powering off" in Path(host.serial_log("lab1-vm2")).read_text()


def test_virsh_live_p2p_migration_between_lab1_and_lab2_and_back(running_lab, virsh) -> None:
    lab1, lab2 = running_lab.host("lab1"), running_lab.host("lab2")
    guest = lab1.guests[0]
    for src, dst in ((lab1, lab2), (lab2, lab1)):
        subprocess.run(
            [
                virsh,
                "-c",
                src.uri,
                "migrate",
                "--live",
                "--p2p",
                "--persistent",
                "--undefinesource",
                guest.name,
                dst.uri,
                "tcp://127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        assert lab.domain_state(dst, guest.name) == "running"
        assert lab.domain_state(src, guest.name) is None
        conn = libvirt.open(dst.uri)
        try:
            assert conn.lookupByName(guest.name).UUIDString() == guest.uuid
        finally:
            conn.close()


def test_virsh_over_ssh_reaches_each_hosts_own_libvirtd(running_lab, virsh) -> None:
    for host in running_lab.real_hosts:
        assert host.ssh_uri and host.ssh_uri.startswith("qemu+ssh://root@127.0.0.1:")
        out = subprocess.run(
            [virsh, "-c", host.ssh_uri, "list", "--all", "--name"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
        assert f"{host.name}-vm2" in out
        # Its own guests only (lab1-vm1 may be visiting after the migration test).
        assert all(name.startswith((f"{host.name}-", "lab1-")) for name in out)
