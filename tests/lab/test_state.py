"""The lab's recorded state and port plan (no daemon needed)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from lab.hosts import plan_hosts
from lab.state import LabGuest, LabHost, LabState

pytestmark = pytest.mark.lab


def _state() -> LabState:
    host = LabHost(
        name="lab1",
        kind="real",
        uri="qemu+tcp://127.0.0.1:16600/system",
        unix_uri="qemu+unix:///system?socket=/b/hosts/lab1/run/libvirt-sock",
        host_uuid=str(uuid.uuid4()),
        tcp_port=16600,
        dir="/b/hosts/lab1",
        dirs={"run": "/b/hosts/lab1/run", "log": "/b/hosts/lab1/log"},
        pids={"libvirtd": 10, "virtlogd": 11},
        mnt_ns="mnt:[4026532301]",
        guests=(LabGuest("lab1-vm1", str(uuid.uuid4()), "running", "/b/x.log"),),
        ssh_uri=None,
        ssh_port=None,
        vnc_ports=(16610, 16629),
        migration_ports=(16630, 16649),
    )
    return LabState(base_dir="/b", lab_id=str(uuid.uuid4()), port_base=16600, created_at=1.5, hosts=(host,))


def test_state_round_trips_through_json() -> None:
    state = _state()
    again = LabState.from_json(state.to_json())
    assert again == state
    assert again.host("lab1").vnc_ports == (16610, 16629)
    assert again.host("lab1").guests[0].name == "lab1-vm1"


def test_serial_log_is_under_the_hosts_log_dir() -> None:
    host = _state().host("lab1")
    assert host.serial_log("lab1-vm2") == "/b/hosts/lab1/log/qemu/lab1-vm2.serial.log"


def test_port_plan_gives_every_host_its_own_ports_and_uuid() -> None:
    plans = plan_hosts(Path("/b"), uuid.uuid4(), 16600, hosts=3, fake_hosts=200, ssh=True)
    ports = [p for plan in plans for p, _ in plan.ports()]
    assert len(ports) == len(set(ports)), "two hosts share a port"
    assert len({plan.host_uuid for plan in plans}) == len(plans)
    assert [p.name for p in plans[:4]] == ["lab1", "lab2", "lab3", "fake001"]
    assert plans[0].uri == "qemu+tcp://127.0.0.1:16600/system"
    assert plans[3].uri == "test+tcp://127.0.0.1:16750/default"


def test_host_uuids_are_stable_for_one_lab_and_differ_between_labs() -> None:
    lab_id = uuid.uuid4()
    first = plan_hosts(Path("/b"), lab_id, 16600, 2, 0, False)
    again = plan_hosts(Path("/b"), lab_id, 16600, 2, 0, False)
    other = plan_hosts(Path("/b"), uuid.uuid4(), 16600, 2, 0, False)
    assert [p.host_uuid for p in first] == [p.host_uuid for p in again]
    assert not {p.host_uuid for p in first} & {p.host_uuid for p in other}
