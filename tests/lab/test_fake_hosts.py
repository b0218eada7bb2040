"""Fake lab hosts: libvirtd serving the test driver, filled and held by the keeper."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import Counter

import libvirt
import pytest

from lab.procs import Proc, is_ours

pytestmark = pytest.mark.lab

STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
}


def test_fake_hosts_list_their_five_domains_in_a_mix_of_states(running_lab) -> None:
    fake = running_lab.fake_hosts
    assert [h.name for h in fake] == ["fake001", "fake002", "fake003"]
    all_uuids = set()
    for host in fake:
        # A new connection sees the keeper's domains: the daemon's default instance is shared.
        conn = libvirt.open(host.uri)
        try:
            doms = conn.listAllDomains()
            assert sorted(d.name() for d in doms) == sorted(f"{host.name}-vm{k}" for k in range(1, 6))
            assert Counter(STATES[d.state()[0]] for d in doms) == {"running": 3, "paused": 1, "shutoff": 1}
            for d in doms:
                xml = ET.fromstring(d.XMLDesc())  # noqa: S314 - from the lab's own libvirtd
                graphics = xml.find("devices/graphics")
                assert graphics is not None and graphics.get("type") == "vnc"
                all_uuids.add(d.UUIDString())
            assert {d.UUIDString() for d in doms} == {g.uuid for g in host.guests}
        finally:
            conn.close()
    assert len(all_uuids) == 15


def test_fake_host_also_answers_on_its_unix_socket(running_lab) -> None:
    host = running_lab.fake_hosts[0]
    conn = libvirt.open(host.unix_uri)
    try:
        assert sorted(d.name() for d in conn.listAllDomains()) == sorted(g.name for g in host.guests)
        assert conn.getType() == "TEST"
    finally:
        conn.close()


def test_keeper_is_running_detached_and_recorded(running_lab) -> None:
    assert running_lab.keeper_pid
    assert is_ours(Proc(running_lab.keeper_pid, "lab.keeper", running_lab.base_dir))
    with open(f"/proc/{running_lab.keeper_pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    assert ppid != os.getpid()
