"""Fixtures for the lab's own tests: real libvirtd + QEMU hosts, no Django.

Self-contained on purpose (no root conftest needed). The tests need root, the
libvirt daemon and QEMU; they are skipped with a reason otherwise. The guest
images are prepared once per session (or taken from a prepared `var/lab`).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import lab  # noqa: E402
from lab.hosts import check_ports_free, plan_hosts  # noqa: E402
from lab.images import images_dir, load_images  # noqa: E402
from lab.procs import read_cmdline  # noqa: E402

MAIN_LAB = {"hosts": 2, "guests_per_host": 2, "fake_hosts": 3, "vms_per_host": 5, "ssh": True}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab: starts real libvirt hosts and QEMU guests (root, libvirt daemon, qemu-system-x86)"
    )


def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for path in ("/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "/usr/bin/qemu-system-x86_64"):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (install libvirt-daemon, libvirt-daemon-driver-qemu, qemu-system-x86)"
    return None


def free_port_base(hosts: int, fake_hosts: int, ssh: bool = False) -> int:
    """A port base whose whole block (VNC and migration ranges included) is free."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20000, 60000, 50)
        plans = plan_hosts(Path("/tmp/x"), uuid.uuid4(), base, hosts, fake_hosts, ssh)
        try:
            check_ports_free(plans)
        except lab.PortInUse:
            continue
        return base
    raise RuntimeError("no free port range found")


@pytest.fixture(scope="session")
def lab_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared images dir: the developer's var/lab one if ready, else built once.

    Every fixture that starts a lab depends on this one, so it is where a machine
    that cannot run the lab skips those tests (with the reason).
    """
    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    # $VIRTFLEET_TEST_LAB_DIR (a developer's own lab dir, as the e2e tests use it): its images,
    # prepared there if they are not (yet, or not for this recipe).
    own = os.environ.get("VIRTFLEET_TEST_LAB_DIR")
    if own:
        lab.prepare(own)
        return images_dir(own)
    dev = REPO_ROOT / "var" / "lab"
    if load_images(dev) is not None:
        return images_dir(dev)
    base = tmp_path_factory.mktemp("lab-images")
    lab.prepare(base)
    return images_dir(base)


@pytest.fixture(scope="session")
def make_base_dir(tmp_path_factory: pytest.TempPathFactory, lab_images: Path):
    """A fresh lab base dir sharing the session's images (no second kernel download)."""

    def make(name: str) -> Path:
        base = tmp_path_factory.mktemp(name)
        (base / "images").symlink_to(lab_images)
        return base

    return make


@pytest.fixture
def scratch_base_dir(make_base_dir) -> Iterator[Path]:
    """A base dir for one test's own lab, which is stopped afterwards whatever happened."""
    base = make_base_dir("lab-scratch")
    yield base
    lab.down(base)


@pytest.fixture(scope="session")
def running_lab(make_base_dir) -> Iterator[lab.LabState]:
    """2 real hosts (2 guests each, the first running, ssh on) + 3 fake hosts x 5 VMs."""
    base = make_base_dir("lab-main")
    port_base = free_port_base(MAIN_LAB["hosts"], MAIN_LAB["fake_hosts"], ssh=True)
    try:
        state = lab.up(base, port_base=port_base, **MAIN_LAB)
    except BaseException:
        lab.down(base)
        raise
    yield state
    lab.down(base)


def processes_pointing_into(base: Path) -> list[str]:
    """Every live process whose command line or cwd names `base` (ours or not)."""
    needle = str(base)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        cmd = read_cmdline(int(entry))
        if cmd is None:
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            cwd = ""
        if needle in cmd or cwd.startswith(needle):
            found.append(f"{entry}: {cmd[:160]}")
    return found


@pytest.fixture(scope="session")
def port_base_for():
    """`port_base_for(hosts, fake_hosts)`: a free port base for a lab of that size."""
    return free_port_base


@pytest.fixture(scope="session")
def lab_processes():
    """`lab_processes(base)`: live processes whose command line or cwd names `base`."""
    return processes_pointing_into


@pytest.fixture
def virsh() -> str:
    path = shutil.which("virsh")
    if path is None:
        pytest.skip("virsh (libvirt-clients) is not installed")
    return path
