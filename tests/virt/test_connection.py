import socket
import threading
import time

import pytest

from tests.helpers import driver_uri
from virt import ConnectionManager, DomainNotFound, HostUnreachable, InvalidURI, PowerState, open_connection


def test_two_node_files_act_as_two_hosts():
    a = open_connection(driver_uri("host-a.xml"))
    b = open_connection(driver_uri("host-b.xml"))
    assert sorted(d.name for d in a.list_domains()) == ["batch-1", "db-1", "web-1"]
    assert [d.name for d in b.list_domains()] == ["cache-1"]
    states = {d.name: d.state for d in a.list_domains()}
    assert states == {"web-1": PowerState.RUNNING, "db-1": PowerState.SHUTOFF, "batch-1": PowerState.PAUSED}


def test_node_info_reports_the_node():
    info = open_connection(driver_uri("host-b.xml")).node_info()
    assert info.cpus == 8
    assert info.memory_bytes == 16 * 1024**3
    assert info.hypervisor_type == "TEST"
    assert info.libvirt_version.count(".") == 2
    assert "<capabilities>" in info.capabilities_xml


def test_domain_info_of_unknown_uuid_is_domain_not_found():
    conn = open_connection(driver_uri("host-a.xml"))
    with pytest.raises(DomainNotFound):
        conn.domain_info("99999999-9999-4999-8999-999999999999")


def test_closed_port_is_unreachable_with_a_hint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(HostUnreachable) as exc:
            open_connection(f"qemu+tcp://127.0.0.1:{port}/system", timeout=3)
    assert "Connection refused" in str(exc.value)
    assert "libvirtd" in exc.value.hint


def test_a_silent_server_times_out_quickly():
    """A TCP port that accepts but never speaks libvirt must not hang the caller."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(HostUnreachable) as exc:
            open_connection(f"qemu+tcp://127.0.0.1:{port}/system", timeout=1.5)
        assert time.monotonic() - started < 5
        assert "did not answer" in str(exc.value)
    finally:
        server.close()


def test_invalid_uri_is_refused_before_connecting():
    with pytest.raises(InvalidURI):
        open_connection("nonsense")


def test_manager_keeps_one_connection_per_host_and_reopens_after_close():
    mgr = ConnectionManager(timeout=3)
    uri = driver_uri("host-a.xml")
    first = mgr.get(1, uri)
    assert mgr.get(1, uri) is first
    first.close()
    second = mgr.get(1, uri)
    assert second is not first and second.is_alive()
    assert mgr.get(2, driver_uri("host-b.xml")) is not second
    mgr.close_all()
    assert not second.is_alive()


def test_events_are_delivered_for_changes():
    conn = open_connection(driver_uri("host-a.xml"))
    seen = []
    conn.register_events(seen.append)
    raw = conn.raw.lookupByName("web-1")
    raw.suspend()
    deadline = time.monotonic() + 3
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen and seen[0].kind == "lifecycle" and seen[0].detail == "suspended"
    assert seen[0].uuid == "11111111-1111-4111-8111-111111111101"
    conn.close()
