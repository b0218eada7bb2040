"""The dashboard against the lab's real libvirtd + QEMU hosts (issue: local lab)."""

import pytest
from django.core.management import call_command

from hosts.models import Host
from tests.e2e.conftest import domstate, virsh
from vms.models import VM

pytestmark = pytest.mark.e2e


def test_lab_hosts_connect_and_the_dashboard_lists_their_vms_with_correct_states(lab_state, lab_hosts):
    assert [h.state for h in lab_hosts] == ["connected", "connected"]
    for lab_host, host in zip(lab_state.real_hosts, lab_hosts, strict=True):
        assert host.hypervisor_type == "QEMU" and host.cpus >= 1 and host.libvirt_version.startswith("9.")
        rows = {vm.name: vm for vm in VM.objects.present().filter(host=host)}
        assert set(rows) == set(virsh(lab_host, "list", "--all", "--name").split())
        for name, vm in rows.items():
            expected = {"running": "running", "shut off": "shutoff", "paused": "paused"}[domstate(lab_host, name)]
            assert vm.state == expected, name
            assert vm.graphics_type == "vnc" and vm.memory_kib == 128 * 1024
        running = rows[f"{lab_host.name}-vm1"]
        assert running.graphics_listen == "127.0.0.1" and running.graphics_port


def test_a_guest_started_with_virsh_behind_the_dashboards_back_shows_after_a_sync(lab_state, lab_hosts):
    lab1 = lab_state.real_hosts[0]
    guest = f"{lab1.name}-vm2"
    assert VM.objects.get(name=guest).state == "shutoff"
    virsh(lab1, "start", guest)
    try:
        call_command("sync_hosts", lab1.name)
        vm = VM.objects.get(name=guest)
        assert vm.state == "running" and vm.graphics_port
    finally:
        virsh(lab1, "destroy", guest)


def test_sync_of_a_host_with_libvirtd_down_marks_it_unreachable(lab_state, lab_hosts):
    import lab

    lab2 = lab_state.real_hosts[1]
    lab.kill_libvirtd(lab_state.base_dir, lab2.name)
    try:
        with pytest.raises(Exception, match="could not be synced"):
            call_command("sync_hosts", lab2.name)
        host = Host.objects.get(name=lab2.name)
        assert host.state == "unreachable" and host.last_error
        assert VM.objects.present().filter(host=host).count() == 2  # not "gone" just because we lost contact
    finally:
        lab.start_libvirtd(lab_state.base_dir, lab2.name)
    call_command("sync_hosts", lab2.name)
    assert Host.objects.get(name=lab2.name).state == "connected"
