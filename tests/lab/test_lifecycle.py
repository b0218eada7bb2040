"""up / status / down of the lab: refusing a second lab, leaving nothing behind,
cleaning up after a crash, and never touching a process that is not the lab's."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lab
from lab.procs import Proc, is_ours, read_cmdline, read_pidfile

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.lab

SMALL_LAB = {"hosts": 1, "guests_per_host": 1, "fake_hosts": 1, "vms_per_host": 2, "wait_guests": False}


def _all_pids(state: lab.LabState) -> list[int]:
    pids = [pid for h in state.hosts for pid in h.pids.values()]
    pids += [pid for h in state.real_hosts for pid in lab.qemu_pids(h).values()]
    if state.keeper_pid:
        pids.append(state.keeper_pid)
    return pids


def _alive(pid: int) -> bool:
    return read_cmdline(pid) is not None


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_second_up_reports_the_running_lab_instead_of_starting_another(running_lab) -> None:
    with pytest.raises(lab.LabAlreadyRunning) as exc:
        lab.up(running_lab.base_dir, port_base=running_lab.port_base)
    assert exc.value.state == running_lab
    assert lab.status(running_lab.base_dir) == running_lab


def test_cli_status_prints_the_hosts_and_guests_and_up_exits_3(running_lab) -> None:
    table = _run_cli("status", "--base-dir", running_lab.base_dir)
    assert table.returncode == 0, table.stderr
    assert "lab1-vm1 running" in table.stdout
    assert "5 VMs: 1 paused, 3 running, 1 shutoff" in table.stdout
    as_json = _run_cli("status", "--base-dir", running_lab.base_dir, "--json")
    assert lab.LabState.from_dict(json.loads(as_json.stdout)) == running_lab
    again = _run_cli("up", "--base-dir", running_lab.base_dir)
    assert again.returncode == 3
    assert "already running" in again.stderr


def test_down_stops_every_process_and_leaves_other_labs_alone(
    scratch_base_dir, running_lab, port_base_for, lab_processes
) -> None:
    base = scratch_base_dir
    state = lab.up(base, port_base=port_base_for(1, 1), **SMALL_LAB)
    pids = _all_pids(state)
    assert len(pids) == 5  # libvirtd, virtlogd, QEMU, fake libvirtd, keeper
    assert all(_alive(pid) for pid in pids)

    stopped = lab.down(base)

    assert {p.pid for p in stopped} >= set(pids)
    assert not [pid for pid in pids if _alive(pid)]
    assert lab_processes(base) == []
    assert lab.status(base) is None
    # The other lab in this session was not touched.
    assert lab.status(running_lab.base_dir) == running_lab
    assert lab.dead_processes(running_lab) == []
    # down removes no file: logs and the last state stay for post-mortems.
    assert (base / "state.json").exists()
    assert (Path(state.host("lab1").log_dir) / "libvirtd.log").exists()


def test_up_after_a_crash_kills_the_leftovers_and_starts_fresh(scratch_base_dir, port_base_for, lab_processes) -> None:
    base = scratch_base_dir
    port_base = port_base_for(1, 1)
    first = lab.up(base, port_base=port_base, **SMALL_LAB)
    first_pids = _all_pids(first)
    qemu = lab.qemu_pids(first.host("lab1"))
    assert list(qemu) == ["lab1-vm1"]
    # Crash: the daemons and the keeper die, the guest's QEMU is orphaned.
    daemons = [pid for h in first.hosts for pid in h.pids.values()] + [first.keeper_pid]
    for pid in daemons:
        os.kill(pid, signal.SIGKILL)
    _wait(lambda: not any(_alive(pid) for pid in daemons))
    assert lab.status(base) is None
    # The lab network's dnsmasq and bridge outlive a killed libvirtd too.
    dnsmasq = read_pidfile(Path(first.host("lab1").run_dir) / "network" / "lab.pid")
    assert lab.leftovers(first) == [
        f"lab1/qemu lab1-vm1 (pid {qemu['lab1-vm1']})",
        f"lab1/dnsmasq lab (pid {dnsmasq})",
        f"bridge {first.host('lab1').network.bridge}",
    ]

    second = lab.up(base, port_base=port_base, **SMALL_LAB)

    assert not _alive(qemu["lab1-vm1"])
    assert not _alive(dnsmasq)
    assert set(_all_pids(second)).isdisjoint(first_pids)
    assert lab.domain_states(second.host("lab1")) == {"lab1-vm1": "running"}
    assert len(lab.domain_states(second.host("fake001"))) == 2
    # Same lab dir, same identities: a dashboard sees the same hosts and VMs again.
    assert [h.host_uuid for h in second.hosts] == [h.host_uuid for h in first.hosts]
    assert second.host("lab1").guests == first.host("lab1").guests
    lab.down(base)
    assert lab_processes(base) == []


def test_a_recorded_pid_now_used_by_another_program_is_never_signalled(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        state = {
            "base_dir": str(tmp_path),
            "lab_id": "00000000-0000-0000-0000-000000000001",
            "port_base": 16600,
            "created_at": 0.0,
            "keeper_pid": stranger.pid,
            "ssh_key": None,
            "version": 1,
            "notes": [],
            "hosts": [
                {
                    "name": "lab1",
                    "kind": "real",
                    "uri": "x",
                    "unix_uri": "x",
                    "host_uuid": "x",
                    "tcp_port": 16600,
                    "dir": str(tmp_path / "hosts" / "lab1"),
                    "dirs": {"run": str(tmp_path / "hosts" / "lab1" / "run")},
                    "pids": {"libvirtd": stranger.pid},
                    "mnt_ns": "mnt:[1]",
                    "guests": [],
                }
            ],
        }
        (tmp_path / "state.json").write_text(json.dumps(state))
        assert not is_ours(Proc(stranger.pid, "libvirtd", str(tmp_path)))
        assert lab.status(tmp_path) is None
        assert lab.down(tmp_path) == []
        assert stranger.poll() is None, "down killed a process that was not the lab's"
    finally:
        stranger.kill()
        stranger.wait()


def test_up_refuses_a_taken_port_and_names_it(scratch_base_dir, port_base_for, lab_processes) -> None:
    base = scratch_base_dir
    port_base = port_base_for(1, 0)
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port_base + 30))  # first migration port of lab1
        blocker.listen()
        with pytest.raises(lab.PortInUse) as exc:
            lab.up(base, hosts=1, guests_per_host=1, port_base=port_base)
    assert exc.value.port == port_base + 30
    assert f"port {port_base + 30}" in str(exc.value) and "migration" in str(exc.value)
    assert lab_processes(base) == []


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)
