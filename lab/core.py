"""up / down / status: the lab's lifecycle, recorded in `<base_dir>/state.json`."""

from __future__ import annotations

import contextlib
import fcntl
import grp
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import libvirt

from lab import hosts as H
from lab.errors import LabAlreadyRunning, LabError, PreflightError
from lab.guests import (
    LAB_POOL,
    fake_state,
    guest_name,
    guest_uuid,
    real_guest_xml,
    wait_guest_ready,
)
from lab.images import Images, prepare
from lab.media import missing_programs as missing_media_programs
from lab.networks import (
    DNSMASQ,
    destroy_networks,
    dnsmasq_procs,
    leftover_bridges,
    machine_lock,
    remove_leftovers,
    start_lab_network,
)
from lab.procs import Proc, is_ours, pids_in_mnt_ns, read_pidfile, terminate
from lab.state import LabGuest, LabHost, LabNetwork, LabState, load_state, save_state, state_path

log = logging.getLogger("lab")

DEFAULT_PORT_BASE = 16600
PORT_BASE_ENV = "VIRTFLEET_LAB_PORT_BASE"
REPO_ROOT = Path(__file__).resolve().parent.parent
QEMU = "/usr/bin/qemu-system-x86_64"

T = TypeVar("T")

# libvirt's domain states, as the lab prints them.

# Without this libvirt prints every error to stderr, even those we handle.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


# --- public API ----------------------------------------------------------------


def up(
    base_dir: str | os.PathLike[str],
    hosts: int = 2,
    guests_per_host: int = 2,
    fake_hosts: int = 0,
    vms_per_host: int = 20,
    ssh: bool = False,
    port_base: int | None = None,
    *,
    wait_guests: bool = True,
    timeout: float = H.START_TIMEOUT,
) -> LabState:
    """Start `hosts` real and `fake_hosts` fake libvirt hosts; return what runs.

    The first guest of every real host is started (and, with `wait_guests`, waited
    for until it is ready for ACPI requests); the others stay shut off. Raises
    LabAlreadyRunning if this base dir's lab is alive, cleans up after a lab that
    died, and stops everything it started if it fails half-way.
    """
    if hosts < 0 or fake_hosts < 0 or guests_per_host < 0 or vms_per_host < 0:
        raise LabError("host, guest and VM counts must not be negative")
    base = Path(base_dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    if port_base is None:
        port_base = int(os.environ.get(PORT_BASE_ENV) or DEFAULT_PORT_BASE)
    started_at = time.monotonic()
    notes = _preflight(real=hosts > 0, ssh=ssh and hosts > 0)
    with _locked(base):
        previous = load_state(base)
        if previous is not None:
            if _live_daemons(previous):
                raise LabAlreadyRunning(previous)
            _cleanup(previous, reason="stale")
        images = prepare(base) if hosts > 0 else None
        lab_id = _lab_id(base)
        plans = H.plan_hosts(base, lab_id, port_base, hosts, fake_hosts, ssh and hosts > 0)
        H.check_ports_free(plans)
        for plan in plans:
            H.write_host_dir(plan)
            if plan.kind == "real" and images is not None:
                H.copy_capabilities(Path(images.kernel).parent / "qemu-capabilities", H.caps_dir(plan.dir))
        state = LabState(
            base_dir=str(base),
            lab_id=str(lab_id),
            port_base=port_base,
            created_at=time.time(),
            hosts=(),
            notes=tuple(notes),
        )
        try:
            state = _start(state, plans, images, guests_per_host, vms_per_host, wait_guests, timeout)
        except BaseException:
            log.error("up failed; stopping what was started")
            _cleanup(load_state(base) or state, reason="failed", extra_dirs=[str(p.dir) for p in plans])
            raise
        log.info("lab up in %.1fs", time.monotonic() - started_at)
        return state


def down(base_dir: str | os.PathLike[str], timeout: float = 10.0) -> list[Proc]:
    """Stop every process the lab started (by recorded PID); files are left as they are.

    Returns the processes that were signalled.
    """
    base = Path(base_dir).resolve()
    if load_state(base) is None:
        return []
    with _locked(base):
        state = load_state(base)
        if state is None:
            return []
        return _cleanup(state, reason="down", timeout=timeout)


def status(base_dir: str | os.PathLike[str]) -> LabState | None:
    """The running lab's state, or None when no lab (or only a dead one) is recorded."""
    state = load_state(Path(base_dir).resolve())
    if state is None or not _live_daemons(state):
        return None
    return state


def dead_processes(state: LabState) -> list[str]:
    """Recorded daemons that are no longer running, as 'host/program (pid N)'."""
    out = []
    for proc in _daemon_procs(state):
        if not is_ours(proc):
            out.append(f"{proc.label} (pid {proc.pid})")
    return out


def leftovers(state: LabState) -> list[str]:
    """Processes of a dead lab that still run (e.g. QEMUs whose libvirtd was killed, or the dnsmasq
    of a network), and bridges of its networks still in the machine's network namespace."""
    procs = [p for p in _qemu_procs(state) + _daemon_procs(state) + _dnsmasq_procs(state) if is_ours(p)]
    out = [f"{p.label} (pid {p.pid})" for p in procs]
    return out + [f"bridge {b}" for b in leftover_bridges([h.dir for h in state.real_hosts])]


def qemu_pids(host: LabHost) -> dict[str, int]:
    """guest name -> QEMU PID, from the pidfiles libvirt keeps in the host's run dir."""
    out = {}
    qdir = Path(host.run_dir) / "qemu"
    for pidfile in sorted(qdir.glob("*.pid")) if qdir.is_dir() else ():
        pid = read_pidfile(pidfile)
        # QEMU's command line names the lab's kernel: <base_dir>/images/vmlinuz.
        if pid is not None and is_ours(Proc(pid, "qemu-system", str(Path(host.dir).parent.parent))):
            out[pidfile.stem] = pid
    return out


def kill_libvirtd(base_dir: str | os.PathLike[str], host_name: str, sig: int = signal.SIGKILL) -> int:
    """Kill one real host's libvirtd (its guests and virtlogd keep running); returns its PID.

    For tests of what the dashboard does when a host goes away.
    """
    state = _require_state(base_dir)
    host = state.host(host_name)
    proc = Proc(host.pids["libvirtd"], "libvirtd", host.dir, label=f"{host.name}/libvirtd")
    if not is_ours(proc):
        raise LabError(f"{host_name}: libvirtd (pid {proc.pid}) is not running")
    os.kill(proc.pid, sig)
    deadline = time.monotonic() + 10
    while is_ours(proc) and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc.pid


def start_libvirtd(base_dir: str | os.PathLike[str], host_name: str, timeout: float = 30.0) -> LabState:
    """Start a real host's libvirtd again, in the host's own mount namespace, and record it.

    The namespace outlives the daemon because virtlogd (and any QEMU) still run in it; the new
    libvirtd picks its running guests back up.
    """
    base = Path(base_dir).resolve()
    with _locked(base):
        state = _require_state(base)
        host = state.host(host_name)
        anchor = Proc(host.pids.get("virtlogd", 0), "virtlogd", host.dir, ns=host.mnt_ns)
        if not is_ours(anchor):
            raise LabError(f"{host_name}: its virtlogd is gone, so its namespace is too; run lab down and up")
        d = Path(host.dir)
        argv = ["nsenter", "-t", str(anchor.pid), "-m", "-r", H.LIBVIRTD, "-d", "-l"]  # -r: its root (a chroot)
        argv += ["-f", str(d / "etc" / "libvirtd.conf"), "-p", str(d / "run" / "libvirtd.pid")]
        subprocess.run(
            argv,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        pid = None
        while time.monotonic() < deadline:
            pid = read_pidfile(d / "run" / "libvirtd.pid")
            if pid and is_ours(Proc(pid, "libvirtd", host.dir)) and pid != host.pids.get("libvirtd"):
                break
            time.sleep(0.02)
        else:
            raise LabError(f"{host_name}: libvirtd did not start again")
        _wait_uri(host.unix_uri, deadline)
        hosts = tuple(
            _replace_host(h, pids={**h.pids, "libvirtd": pid}) if h.name == host_name else h for h in state.hosts
        )
        state = _replace(state, hosts=hosts)
        save_state(state)
        return state


def _wait_uri(uri: str, deadline: float) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            libvirt.open(uri).close()
            return
        except libvirt.libvirtError as e:
            last = e
            time.sleep(0.05)
    raise LabError(f"{uri} did not answer: {last}")


def _replace_host(host: LabHost, **changes: object) -> LabHost:
    import dataclasses

    return dataclasses.replace(host, **changes)  # type: ignore[arg-type]


def _require_state(base_dir: str | os.PathLike[str]) -> LabState:
    state = load_state(Path(base_dir).resolve())
    if state is None:
        raise LabError(f"no lab recorded in {base_dir}")
    return state


# --- up, step by step ----------------------------------------------------------


def _start(
    state: LabState,
    plans: list[H.HostPlan],
    images: Images | None,
    guests_per_host: int,
    vms_per_host: int,
    wait_guests: bool,
    timeout: float,
) -> LabState:
    base = Path(state.base_dir)
    lab_id = uuid.UUID(state.lab_id)
    t0 = time.monotonic()
    deadline = t0 + timeout
    procs = [(plan, H.spawn(plan)) for plan in plans]
    started: list[H.Started] = []
    errors: list[BaseException] = []
    for plan, proc in procs:
        try:
            started.append(H.collect(plan, proc, deadline))
        except LabError as e:
            errors.append(e)
    # Record the PIDs before anything else can fail, so a cleanup can find them.
    state = _with_hosts(state, started, lab_id, guests_per_host, vms_per_host, ssh_key=None)
    save_state(state)
    if errors:
        raise errors[0]
    log.info("%d libvirtd started in %.1fs", len(started), time.monotonic() - t0)

    _parallel(lambda s: H.wait_accepting(s.plan, s.plan.uri, deadline), started)
    log.info("all hosts accept connections after %.1fs", time.monotonic() - t0)

    ssh_key = None
    ssh_plans = [s for s in started if s.plan.ssh_port is not None]
    if ssh_plans:
        key, authorized = H.ensure_ssh_keys(base, [s.plan.name for s in ssh_plans])
        ssh_key = str(key)
        for s in ssh_plans:
            s.pids["sshd"] = H.start_sshd(s.plan, s.pids["libvirtd"], base, authorized, deadline)
        state = _with_hosts(state, started, lab_id, guests_per_host, vms_per_host, ssh_key=ssh_key)
        save_state(state)

    real = [h for h in state.hosts if h.kind == "real"]
    if real:
        assert images is not None
        _warm_capabilities(real, Path(images.kernel).parent / "qemu-capabilities")
        _parallel(lambda h: _define_lab_pool(h, images), real)
        networks: dict[str, LabNetwork] = {}

        def define_network(h: LabHost) -> None:
            networks[h.name] = start_lab_network(h.unix_uri, h.name, lab_id, h.tcp_port)

        try:
            _parallel(define_network, real)
        finally:  # record what started, so that `down` (or a failed `up`) finds it
            state = _replace(
                state, hosts=tuple(_replace_host(h, network=networks.get(h.name, h.network)) for h in state.hosts)
            )
            save_state(state)
        real = list(state.real_hosts)
        log.info("lab networks started after %.1fs", time.monotonic() - t0)
        _parallel(lambda h: _define_real_guests(h, images), real)
        log.info("real guests defined and started after %.1fs", time.monotonic() - t0)

    fake = [h for h in state.hosts if h.kind == "fake"]
    if fake:
        keeper_pid = _start_keeper(state, deadline)
        state = _replace(state, keeper_pid=keeper_pid)
        save_state(state)
        log.info("%d fake hosts filled after %.1fs", len(fake), time.monotonic() - t0)

    if wait_guests and real:
        _parallel(
            lambda h: [
                wait_guest_ready(h, g.name, max(5.0, deadline - time.monotonic()))
                for g in h.guests
                if g.initial_state == "running"
            ],
            real,
        )
        log.info("started guests ready after %.1fs", time.monotonic() - t0)
    return state


def _with_hosts(
    state: LabState,
    started: list[H.Started],
    lab_id: uuid.UUID,
    guests_per_host: int,
    vms_per_host: int,
    ssh_key: str | None,
) -> LabState:
    hosts = []
    for s in started:
        p = s.plan
        if p.kind == "real":
            guests = tuple(
                LabGuest(
                    name=guest_name(p.name, k),
                    uuid=guest_uuid(lab_id, guest_name(p.name, k)),
                    initial_state="running" if k == 1 else "shutoff",
                    serial_log=str(p.dir / "log" / "qemu" / f"{guest_name(p.name, k)}.serial.log"),
                )
                for k in range(1, guests_per_host + 1)
            )
        else:
            guests = tuple(
                LabGuest(
                    name=guest_name(p.name, k),
                    uuid=guest_uuid(lab_id, guest_name(p.name, k)),
                    initial_state=fake_state(k),
                )
                for k in range(1, vms_per_host + 1)
            )
        hosts.append(
            LabHost(
                name=p.name,
                kind=p.kind,
                uri=p.uri,
                unix_uri=p.unix_uri,
                host_uuid=p.host_uuid,
                tcp_port=p.tcp_port,
                dir=str(p.dir),
                dirs=p.dirs,
                pids=dict(s.pids),
                mnt_ns=s.mnt_ns,
                guests=guests,
                ssh_uri=H.ssh_uri(p.ssh_port, Path(ssh_key)) if ssh_key and p.ssh_port else None,
                ssh_port=p.ssh_port,
                vnc_ports=p.vnc_ports,
                migration_ports=p.migration_ports,
            )
        )
    return _replace(state, hosts=tuple(hosts), ssh_key=ssh_key)


def _warm_capabilities(real: list[LabHost], seed: Path) -> None:
    """Have every real host's QEMU capabilities cached before the guests boot.

    Hosts start from the seed kept with the images; the first host probes what is
    missing (getCapabilities), and its cache is shared with the seed and the others.
    """
    first = real[0]
    conn = libvirt.open(first.unix_uri)
    try:
        conn.getCapabilities()
    finally:
        conn.close()
    H.copy_capabilities(H.caps_dir(first.dir), seed)
    for host in real[1:]:
        H.copy_capabilities(seed, H.caps_dir(host.dir))


LAB_POOL_PATH = "/var/lib/libvirt/images"  # as the host's libvirtd sees it (its own directory)


def _define_lab_pool(host: LabHost, images: Images) -> None:
    """A dir pool on every real host with the lab's bootable ISO, disk image and cloud image in it
    (`lab-boot.iso`, `lab-disk.qcow2`, `lab-cloud.qcow2` in /var/lib/libvirt/images as the host sees it).

    A copy older than the built image (rebuilt since: new recipe) is replaced."""
    pool_dir = Path(host.dir) / "lib" / "images"
    pool_dir.mkdir(parents=True, exist_ok=True)
    for source in (images.iso, images.qcow2, images.cloud):
        target = pool_dir / Path(source).name
        if not target.exists() or target.stat().st_mtime < Path(source).stat().st_mtime:
            partial = target.with_name(f".{target.name}.partial")
            subprocess.run(["cp", "--sparse=always", source, str(partial)], check=True)
            partial.replace(target)
    conn = libvirt.open(host.unix_uri)
    try:
        try:
            pool = conn.storagePoolLookupByName(LAB_POOL)
        except libvirt.libvirtError:
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>{LAB_POOL}</name><target><path>{LAB_POOL_PATH}</path></target></pool>", 0
            )
        if not pool.isActive():
            pool.create(0)
        pool.setAutostart(1)
        pool.refresh(0)
    except libvirt.libvirtError as e:
        raise LabError(f"{host.name}: the lab storage pool failed: {e}") from e
    finally:
        conn.close()


def _define_real_guests(host: LabHost, images: Images) -> None:
    conn = libvirt.open(host.unix_uri)
    try:
        for g in host.guests:
            dom = conn.defineXML(real_guest_xml(g.name, g.uuid, images))
            if g.initial_state == "running":
                # One guest start at a time on the machine: each daemon names taps vnet<N> from its
                # own counter, and two creating one at the same instant could pick the same name.
                with machine_lock():
                    dom.create()
    except libvirt.libvirtError as e:
        raise LabError(f"{host.name}: defining/starting guests failed: {e}") from e
    finally:
        conn.close()


def _keeper_paths(base: Path) -> dict[str, Path]:
    d = base / "keeper"
    return {"dir": d, "pid": d / "keeper.pid", "ready": d / "keeper.ready", "log": d / "keeper.log"}


def _start_keeper(state: LabState, deadline: float) -> int:
    """Detach `python -m lab.keeper`, which fills the fake hosts and holds them open."""
    base = Path(state.base_dir)
    paths = _keeper_paths(base)
    paths["dir"].mkdir(exist_ok=True)
    for key in ("pid", "ready"):
        paths[key].unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with open(paths["log"], "wb") as logf:
        # setsid -f: the keeper is nobody's child, so no caller has to reap it.
        subprocess.run(
            [
                "setsid",
                "-f",
                sys.executable,
                "-m",
                "lab.keeper",
                "--state",
                str(state_path(base)),
                "--pidfile",
                str(paths["pid"]),
                "--ready",
                str(paths["ready"]),
            ],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=base,
            check=True,
        )
    pid = None
    while time.monotonic() < deadline:
        pid = pid or read_pidfile(paths["pid"])
        if paths["ready"].exists():
            assert pid is not None
            return pid
        if pid is not None and not is_ours(_keeper_proc(base, pid)):
            break
        time.sleep(0.05)
    log_tail = paths["log"].read_text(errors="replace")[-2000:]
    if pid is not None:
        terminate([_keeper_proc(base, pid)])
    raise LabError(f"the fake-host keeper did not get ready (pid {pid}); its log:\n{log_tail}")


def _keeper_proc(base: Path, pid: int) -> Proc:
    return Proc(pid, "lab.keeper", str(state_path(base)), label="keeper")


# --- preflight -------------------------------------------------------------------


def _preflight(*, real: bool, ssh: bool) -> list[str]:
    """Check the machine; returns notes on the (few) changes made to it."""
    if os.geteuid() != 0:
        raise PreflightError(
            "the lab must run as root: it bind-mounts over /etc/libvirt in private mount "
            "namespaces and runs libvirtd and QEMU as root (try: sudo python -m lab up)"
        )
    needed = {
        "libvirtd": H.LIBVIRTD,
        "unshare": shutil.which("unshare") or "/usr/bin/unshare",
        "setsid": shutil.which("setsid") or "/usr/bin/setsid",
    }
    if real:
        needed.update({"virtlogd": H.VIRTLOGD, "qemu-system-x86_64": QEMU, "dnsmasq": DNSMASQ})
    if ssh:
        needed.update(
            {
                "sshd": H.SSHD,
                "nsenter": shutil.which("nsenter") or "/usr/bin/nsenter",
                "ssh-keygen": shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen",
                "virt-ssh-helper": shutil.which("virt-ssh-helper") or "/usr/bin/virt-ssh-helper",
            }
        )
    missing = [name for name, path in needed.items() if not os.access(path, os.X_OK)]
    if real and missing_media_programs():
        raise PreflightError(f"the lab's boot media need: apt-get install {' '.join(missing_media_programs())}")
    if missing:
        packages = "libvirt-daemon, libvirt-daemon-driver-qemu, qemu-system-x86 and dnsmasq-base"
        if ssh:
            packages += " (and openssh-server for --ssh)"
        raise PreflightError(
            f"missing {', '.join(missing)}: install the {packages} packages "
            f"(apt-get install --no-install-recommends ...)"
        )
    notes = []
    if real:
        # The QEMU driver looks its built-in user up before reading qemu.conf.
        try:
            grp.getgrnam("libvirt-qemu")
        except KeyError:
            subprocess.run(["groupadd", "--system", "libvirt-qemu"], check=True)
            notes.append("created system group libvirt-qemu (the QEMU driver needs it to exist)")
        try:
            pwd.getpwnam("libvirt-qemu")
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--gid",
                    "libvirt-qemu",
                    "--no-create-home",
                    "--home-dir",
                    "/var/lib/libvirt",
                    "--shell",
                    "/usr/sbin/nologin",
                    "libvirt-qemu",
                ],
                check=True,
            )
            notes.append("created system user libvirt-qemu (the QEMU driver needs it to exist)")
    # Bind mounts need their targets; the libvirt packages normally create them.
    mountpoints = list(H.BIND_MOUNTS)
    if ssh:
        mountpoints.append("/run/sshd")  # sshd's privilege separation directory
    for target in mountpoints:
        if not os.path.isdir(target):
            os.makedirs(target, mode=0o755, exist_ok=True)
            notes.append(f"created missing empty directory {target}")
    for note in notes:
        log.warning("system change: %s", note)
    return notes


def _lab_id(base: Path) -> uuid.UUID:
    """A random id kept in the base dir: UUIDs stay stable across restarts of this lab."""
    path = base / "lab-id"
    try:
        return uuid.UUID(path.read_text().strip())
    except (OSError, ValueError):
        lab_id = uuid.uuid4()
        path.write_text(f"{lab_id}\n")
        return lab_id


# --- stopping --------------------------------------------------------------------


DAEMON_PIDFILES = {"libvirtd": "libvirtd.pid", "virtlogd": "virtlogd.pid", "sshd": "sshd.pid"}


def _daemon_procs(state: LabState, extra_dirs: Sequence[str] = ()) -> list[Proc]:
    """Recorded daemons, plus any a daemon's pidfile names (a half-finished `up`)."""
    procs = []
    seen = set()
    for h in state.hosts:
        for program, pid in h.pids.items():
            procs.append(Proc(pid, program, h.dir, label=f"{h.name}/{program}"))
            seen.add(pid)
    for d in [h.dir for h in state.hosts] + list(extra_dirs):
        for program, name in DAEMON_PIDFILES.items():
            pid = read_pidfile(Path(d, "run", name))
            if pid is not None and pid not in seen:
                procs.append(Proc(pid, program, d, label=f"{Path(d).name}/{program}"))
                seen.add(pid)
    if state.keeper_pid:
        procs.append(_keeper_proc(Path(state.base_dir), state.keeper_pid))
    return procs


def _dnsmasq_procs(state: LabState) -> list[Proc]:
    return [p for h in state.real_hosts for p in dnsmasq_procs(h.dir, h.name, h.mnt_ns)]


def _real_host_dirs(state: LabState, extra_dirs: Sequence[str] = ()) -> list[str]:
    dirs = [h.dir for h in state.real_hosts]
    return dirs + [d for d in extra_dirs if d not in dirs and Path(d, "etc", "qemu.conf").is_file()]


def _stop_networks(state: LabState, extra_dirs: Sequence[str] = ()) -> None:
    """Have each real host's libvirtd that still runs stop its networks: dnsmasq, the firewall
    rules and the bridge go with them (a killed daemon would leave them behind)."""

    def stop(d: str) -> None:
        pid = read_pidfile(Path(d, "run", "libvirtd.pid"))
        if pid is None or not is_ours(Proc(pid, "libvirtd", d)):
            return
        uri = f"qemu+unix:///system?socket={Path(d, 'run', 'libvirt-sock')}"
        try:
            conn = H._open_with_timeout(uri, 10.0)
        except (libvirt.libvirtError, TimeoutError) as e:
            log.warning("%s: could not stop its networks: %s", Path(d).name, e)
            return
        try:
            destroy_networks(conn)
        except libvirt.libvirtError as e:
            log.warning("%s: could not stop its networks: %s", Path(d).name, e)
        finally:
            conn.close()

    _parallel(stop, _real_host_dirs(state, extra_dirs))


def _live_daemons(state: LabState) -> list[Proc]:
    return [p for p in _daemon_procs(state) if is_ours(p)]


def _qemu_procs(state: LabState) -> list[Proc]:
    procs = []
    for h in state.hosts:
        for guest, pid in qemu_pids(h).items():
            procs.append(Proc(pid, "qemu-system", state.base_dir, label=f"{h.name}/qemu {guest}"))
    return procs


def _cleanup(state: LabState, *, reason: str, timeout: float = 10.0, extra_dirs: Sequence[str] = ()) -> list[Proc]:
    """Stop everything of `state` that still runs: keeper, QEMUs, then the daemons.

    Only recorded/pidfile PIDs whose command line still names this lab are
    signalled. Then any other process left inside one of the hosts' mount
    namespaces (e.g. an ssh session's virt-ssh-helper) is stopped too, but only
    for namespaces that one of our verified processes proved to be still ours.
    """
    daemons = [p for p in _daemon_procs(state, extra_dirs) if p.program != "lab.keeper"]
    keeper = [p for p in _daemon_procs(state) if p.program == "lab.keeper"]
    qemus = _qemu_procs(state)
    verified = [p for p in daemons + qemus if is_ours(p)]
    # A namespace is still ours while a verified process of that host lives in it
    # (a QEMU belongs to the host whose run dir holds its pidfile).
    live_ns = {h.mnt_ns for h in state.hosts if any(p.label.startswith(f"{h.name}/") for p in verified)}
    signalled: list[Proc] = []
    if reason == "stale" and (verified or any(is_ours(p) for p in keeper)):
        log.warning("cleaning up after a lab that died in %s", state.base_dir)
    signalled += terminate(keeper, timeout)
    signalled += terminate(qemus, timeout)
    _stop_networks(state, extra_dirs)
    signalled += terminate([p for p in daemons if p.program == "sshd"], timeout)
    signalled += terminate(_ns_strays(state, live_ns, exclude={p.pid for p in daemons}), timeout)
    signalled += terminate([p for p in daemons if p.program != "sshd"], timeout)
    signalled += terminate(_ns_strays(state, live_ns, exclude=set()), timeout)
    # A network whose libvirtd was killed: its dnsmasq (alone in the host's namespace now) and bridge.
    signalled += terminate(_dnsmasq_procs(state), timeout)
    remove_leftovers(_real_host_dirs(state, extra_dirs))
    if signalled:
        log.info("stopped %d processes (%s)", len(signalled), reason)
    return signalled


def _ns_strays(state: LabState, namespaces: set[str], exclude: set[int]) -> list[Proc]:
    if not namespaces:
        return []
    return [
        Proc(pid, "", "", label=f"process in the namespace of a lab host ({ns})", ns=ns)
        for pid, ns in pids_in_mnt_ns(namespaces)
        if pid not in exclude
    ]


# --- helpers ---------------------------------------------------------------------


@contextlib.contextmanager
def _locked(base: Path) -> Iterator[None]:
    """One up/down at a time per base dir."""
    with open(base / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _parallel(fn: Callable[[T], object], items: list[T]) -> None:
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(32, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]


def _replace(state: LabState, **changes: object) -> LabState:
    import dataclasses

    return dataclasses.replace(state, **changes)  # type: ignore[arg-type]
