"""One lab host = one libvirtd (+ virtlogd, + optional sshd) in a private mount namespace.

`unshare -m --propagation private` runs a small script that bind-mounts the host's
own directories over /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/cache/libvirt and /var/log/libvirt, then starts the daemons, which daemonize
and keep the namespace alive. Every daemon is given its config and pidfile by
their real path under `<base_dir>/hosts/<name>/`, so its command line names the
lab it belongs to (see `lab.procs`).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import libvirt

from lab.errors import LabError, PortInUse
from lab.procs import mnt_ns, read_pidfile

log = logging.getLogger(__name__)

LIBVIRTD = "/usr/sbin/libvirtd"
VIRTLOGD = "/usr/sbin/virtlogd"
SSHD = "/usr/sbin/sshd"

# What each host's namespace sees where (target inside the namespace -> subdir).
BIND_MOUNTS = {
    "/etc/libvirt": "etc",
    "/run/libvirt": "run",
    "/var/lib/libvirt": "lib",
    "/var/cache/libvirt": "cache",
    "/var/log/libvirt": "log",
}

# Port layout: real host i owns [base + 50*i, base + 50*i + 49]; fake hosts follow,
# one port each.
REAL_BLOCK = 50
SSH_OFFSET = 1
VNC_OFFSETS = (10, 29)
MIGRATION_OFFSETS = (30, 49)

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class HostPlan:
    """What `up` is about to start for one host: name, kind, ports, directories."""

    name: str
    kind: str  # 'real' | 'fake'
    dir: Path
    tcp_port: int
    host_uuid: str
    ssh_port: int | None = None
    vnc_ports: tuple[int, int] | None = None
    migration_ports: tuple[int, int] | None = None

    @property
    def dirs(self) -> dict[str, str]:
        d = {sub: str(self.dir / sub) for sub in BIND_MOUNTS.values()}
        d["root"] = str(self.dir)
        return d

    @property
    def uri(self) -> str:
        if self.kind == "real":
            return f"qemu+tcp://127.0.0.1:{self.tcp_port}/system"
        return f"test+tcp://127.0.0.1:{self.tcp_port}/default"

    @property
    def unix_uri(self) -> str:
        sock = self.dir / "run" / "libvirt-sock"
        if self.kind == "real":
            return f"qemu+unix:///system?socket={sock}"
        return f"test+unix:///default?socket={sock}"

    def ports(self) -> list[tuple[int, str]]:
        """Every port this host will listen on, with what it is for."""
        out = [(self.tcp_port, f"libvirtd of {self.name}")]
        if self.ssh_port is not None:
            out.append((self.ssh_port, f"sshd of {self.name}"))
        for rng, what in ((self.vnc_ports, "VNC"), (self.migration_ports, "migration")):
            if rng is not None:
                out += [(p, f"{what} range of {self.name}") for p in range(rng[0], rng[1] + 1)]
        return out


def plan_hosts(
    base_dir: Path, lab_id: uuid.UUID, port_base: int, hosts: int, fake_hosts: int, ssh: bool
) -> list[HostPlan]:
    plans = []
    for i in range(hosts):
        first = port_base + REAL_BLOCK * i
        name = f"lab{i + 1}"
        plans.append(
            HostPlan(
                name=name,
                kind="real",
                dir=base_dir / "hosts" / name,
                tcp_port=first,
                host_uuid=str(uuid.uuid5(lab_id, f"host/{name}")),
                ssh_port=first + SSH_OFFSET if ssh else None,
                vnc_ports=(first + VNC_OFFSETS[0], first + VNC_OFFSETS[1]),
                migration_ports=(first + MIGRATION_OFFSETS[0], first + MIGRATION_OFFSETS[1]),
            )
        )
    first_fake = port_base + REAL_BLOCK * hosts
    for j in range(fake_hosts):
        name = f"fake{j + 1:03d}"
        plans.append(
            HostPlan(
                name=name,
                kind="fake",
                dir=base_dir / "hosts" / name,
                tcp_port=first_fake + j,
                host_uuid=str(uuid.uuid5(lab_id, f"host/{name}")),
            )
        )
    # libvirtd and virtlogd bind unix sockets in the run dir; sun_path holds 107 bytes.
    longest = base_dir / "hosts" / "fake000" / "run" / "virtlogd-admin-sock"
    if len(str(longest).encode()) > 107:
        raise LabError(
            f"base dir {base_dir} is too long for the daemons' unix socket paths "
            f"(max ~{107 - len(str(longest)) + len(str(base_dir))} characters); choose a shorter --base-dir"
        )
    last = max((p for plan in plans for p, _ in plan.ports()), default=port_base)
    if last > 65535:
        raise LabError(f"port base {port_base} is too high for {len(plans)} hosts (needs up to {last})")
    return plans


def check_ports_free(plans: list[HostPlan]) -> None:
    """Bind every port once (as the daemons will, with SO_REUSEADDR): fail on the first taken."""
    for plan in plans:
        for port, purpose in plan.ports():
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError as e:
                    raise PortInUse(port, purpose) from e


# --- configuration -----------------------------------------------------------


def _libvirtd_conf(plan: HostPlan) -> str:
    lines = [
        "# Written by the virtfleet lab: one libvirtd per lab host, loopback only.",
        "listen_tls = 0",
        "listen_tcp = 1",
        'listen_addr = "127.0.0.1"',
        f'tcp_port = "{plan.tcp_port}"',
        # Loopback only, and the lab exists to be driven by tests: no authentication.
        'auth_tcp = "none"',
        'auth_unix_rw = "none"',
        'auth_unix_ro = "none"',
        'unix_sock_rw_perms = "0770"',
        # libvirt refuses to migrate between hosts that share a host UUID.
        f'host_uuid = "{plan.host_uuid}"',
        'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
    ]
    if plan.kind == "fake":
        # Hundreds of these run at once: keep the thread pools small.
        lines += [
            "min_workers = 1",
            "max_workers = 4",
            "prio_workers = 1",
            "admin_min_workers = 1",
            "admin_max_workers = 1",
        ]
    return "\n".join(lines) + "\n"


def _qemu_conf(plan: HostPlan) -> str:
    assert plan.vnc_ports and plan.migration_ports
    return (
        "\n".join(
            [
                "# Written by the virtfleet lab (see LAB.md).",
                'user = "root"',
                'group = "root"',
                "dynamic_ownership = 0",
                "remember_owner = 0",
                'security_driver = "none"',
                "cgroup_controllers = [ ]",
                # QEMU stays in the host's namespace (no per-domain /dev namespace), so the
                # lab's kernel/initramfs paths and the host's bind mounts are what it sees.
                "namespaces = [ ]",
                'vnc_listen = "127.0.0.1"',
                f"remote_display_port_min = {plan.vnc_ports[0]}",
                f"remote_display_port_max = {plan.vnc_ports[1]}",
                # No migration_address here: the daemon refuses a local address; the
                # caller passes tcp://127.0.0.1 per migration instead.
                f"migration_port_min = {plan.migration_ports[0]}",
                f"migration_port_max = {plan.migration_ports[1]}",
            ]
        )
        + "\n"
    )


def _virtlogd_conf() -> str:
    return 'log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n'


def _start_script(plan: HostPlan) -> str:
    def q(path: Path | str) -> str:
        return shlex.quote(str(path))

    d = plan.dir
    lines = ["#!/bin/sh", "# Runs inside `unshare -m --propagation private` (see lab/hosts.py).", "set -e"]
    for target, sub in BIND_MOUNTS.items():
        lines.append(f"mount --bind {q(d / sub)} {q(target)}")
    if plan.kind == "real":
        lines.append(f"{q(VIRTLOGD)} -d -f {q(d / 'etc' / 'virtlogd.conf')} -p {q(d / 'run' / 'virtlogd.pid')}")
    else:
        # No QEMU on a fake host: load no driver module at all (the test driver is
        # built into libvirt.so). Measured: RSS 11.4 instead of 17.6 MiB, PSS 2.7 instead of
        # 4.2 MiB, and no QEMU driver probing QEMU in each of hundreds of daemons.
        lines.append(f"export LIBVIRT_DRIVER_DIR={q(d / 'no-drivers')}")
    lines.append(f"exec {q(LIBVIRTD)} -d -l -f {q(d / 'etc' / 'libvirtd.conf')} -p {q(d / 'run' / 'libvirtd.pid')}")
    return "\n".join(lines) + "\n"


def write_host_dir(plan: HostPlan) -> None:
    """Lay out a fresh host directory (keeping only the QEMU capabilities cache)."""
    d = plan.dir
    d.mkdir(parents=True, exist_ok=True)
    for entry in d.iterdir():
        if entry.name == "cache":
            continue  # QEMU capabilities probing costs ~1 s per binary: keep it
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for sub in BIND_MOUNTS.values():
        (d / sub).mkdir(exist_ok=True)
    (d / "log" / "qemu").mkdir()
    (d / "etc" / "libvirtd.conf").write_text(_libvirtd_conf(plan))
    if plan.kind == "real":
        (d / "etc" / "qemu.conf").write_text(_qemu_conf(plan))
        (d / "etc" / "virtlogd.conf").write_text(_virtlogd_conf())
    else:
        (d / "no-drivers").mkdir()
    script = d / "start.sh"
    script.write_text(_start_script(plan))
    script.chmod(0o755)


def caps_dir(host_dir: Path | str) -> Path:
    return Path(host_dir) / "cache" / "qemu" / "capabilities"


def copy_capabilities(src: Path, dst: Path) -> int:
    """Copy libvirt's QEMU capabilities cache files that `dst` lacks; returns how many.

    Probing one QEMU binary costs ~2 s of CPU per daemon (x86_64 at start, i386 at
    the first getCapabilities). The files are keyed by binary path and validated by
    libvirt itself (binary ctime, libvirt version, host CPU, kernel), so sharing
    them between hosts of one machine is safe: a stale file is simply re-probed.
    """
    if not src.is_dir():
        return 0
    dst.mkdir(parents=True, exist_ok=True)
    copied = 0
    for f in src.glob("*.xml"):
        target = dst / f.name
        if not target.exists():
            tmp = dst / f".{f.name}.tmp"
            shutil.copyfile(f, tmp)
            tmp.chmod(0o600)
            os.replace(tmp, target)
            copied += 1
    return copied


# --- starting and waiting ----------------------------------------------------


@dataclass
class Started:
    """A host whose daemons are up: PIDs and namespace, as read back from pidfiles."""

    plan: HostPlan
    pids: dict[str, int]
    mnt_ns: str


def propagation() -> str:
    """How the new mount namespace treats mount propagation.

    Normally "private", so the host's bind mounts never leak back. Inside a chroot whose root is
    not a mount point `unshare` cannot change the root's propagation ("Invalid argument"); when no
    mount on the machine is shared, nothing can propagate anyway and "unchanged" is just as safe.
    """
    try:
        with open("/proc/self/mountinfo") as f:
            lines = [line.split() for line in f]
    except OSError:
        return "private"
    if any(len(fields) > 4 and fields[4] == "/" for fields in lines):
        return "private"
    if any(any(opt.startswith("shared:") for opt in fields[6:]) for fields in lines):
        raise LabError(
            "the root directory is not a mount point (a chroot?) and some mounts are shared: the lab's "
            "bind mounts could leak out. Run the lab on the machine itself, or bind-mount the chroot onto itself."
        )
    return "unchanged"


def spawn(plan: HostPlan) -> subprocess.Popen[bytes]:
    """Start the namespace script; it exits once libvirtd has daemonized."""
    with open(plan.dir / "start.log", "wb") as logf:
        return subprocess.Popen(
            ["unshare", "-m", "--propagation", propagation(), "/bin/sh", str(plan.dir / "start.sh")],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=plan.dir,
            start_new_session=True,
        )


def collect(plan: HostPlan, proc: subprocess.Popen[bytes], deadline: float) -> Started:
    """Wait for the start script, then read the daemons' pidfiles and namespace."""
    try:
        rc = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{plan.name}: starting the daemons took too long\n{tail_logs(plan)}") from e
    pids: dict[str, int] = {}
    for name in ("libvirtd", "virtlogd") if plan.kind == "real" else ("libvirtd",):
        pid = None
        while pid is None and time.monotonic() < deadline:
            pid = read_pidfile(plan.dir / "run" / f"{name}.pid")
            if pid is None:
                time.sleep(0.02)
        if pid is not None:
            pids[name] = pid
    if rc != 0 or "libvirtd" not in pids:
        raise LabError(f"{plan.name}: the daemons did not start (start script exit {rc})\n{tail_logs(plan)}")
    ns = mnt_ns(pids["libvirtd"])
    if ns is None:
        raise LabError(f"{plan.name}: libvirtd (pid {pids['libvirtd']}) died right after starting\n{tail_logs(plan)}")
    return Started(plan=plan, pids=pids, mnt_ns=ns)


def wait_accepting(plan: HostPlan, uri: str, deadline: float) -> None:
    """Open `uri` until the daemon answers; fail with its log tail at the deadline."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = _open_with_timeout(uri, max(0.5, deadline - time.monotonic()))
            try:
                conn.getLibVersion()
                return
            finally:
                conn.close()
        except (libvirt.libvirtError, TimeoutError) as e:
            last = e
            time.sleep(0.1)
    raise LabError(f"{plan.name}: libvirtd did not accept connections on {uri}: {last}\n{tail_logs(plan)}")


def _open_with_timeout(uri: str, timeout: float) -> libvirt.virConnect:
    """libvirt.open() without a timeout of its own can hang on a daemon that is stuck."""
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["conn"] = libvirt.open(uri)
        except libvirt.libvirtError as e:
            result["err"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"opening {uri} took more than {timeout:.0f}s")
    if "err" in result:
        raise result["err"]  # type: ignore[misc]
    return result["conn"]  # type: ignore[return-value]


def tail_logs(plan: HostPlan, lines: int = 15) -> str:
    out = []
    for rel in ("start.log", "log/libvirtd.log", "log/virtlogd.log", "log/sshd.log"):
        path = plan.dir / rel
        try:
            text = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        if text:
            out.append(f"--- {path} (last {min(lines, len(text))} lines)")
            out.extend(text[-lines:])
    return "\n".join(out) or "(no daemon log written)"


# --- ssh ---------------------------------------------------------------------


def ensure_ssh_keys(base_dir: Path, names: list[str]) -> tuple[Path, Path]:
    """A client key pair and one host key per host, generated once and kept."""
    ssh_dir = base_dir / "ssh"
    (ssh_dir / "hostkeys").mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    key = ssh_dir / "id_ed25519"
    if not key.exists():
        _keygen(key, "virtfleet-lab-client")
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text((ssh_dir / "id_ed25519.pub").read_text())
    for name in names:
        hostkey = ssh_dir / "hostkeys" / f"{name}_ed25519"
        if not hostkey.exists():
            _keygen(hostkey, f"virtfleet-lab-{name}")
    # The ssh that libvirt runs for the lab's qemu+ssh URIs (their command= parameter): with
    # no_verify=1 ssh would still record the lab's host keys in ~/.ssh/known_hosts; this keeps them
    # in the lab's own directory instead, which nothing outside the lab reads.
    command = ssh_command(key)
    command.write_text(
        "#!/bin/sh\n"
        "# ssh for the Virtfleet lab's qemu+ssh URIs: host keys go to the lab's known_hosts, not ~/.ssh\n"
        f'exec ssh -o UserKnownHostsFile={ssh_dir / "known_hosts"} "$@"\n'
    )
    command.chmod(0o755)
    return key, authorized


def ssh_command(key: Path) -> Path:
    return key.parent / "ssh-command"


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def ssh_uri(port: int, key: Path) -> str:
    return f"qemu+ssh://root@127.0.0.1:{port}/system?keyfile={key}&no_verify=1&command={ssh_command(key)}"


def start_sshd(plan: HostPlan, libvirtd_pid: int, base_dir: Path, authorized: Path, deadline: float) -> int:
    """sshd inside the host's namespace, so virt-ssh-helper finds that host's socket."""
    assert plan.ssh_port is not None
    d = plan.dir
    config = d / "etc" / "sshd_config"
    pidfile = d / "run" / "sshd.pid"
    config.write_text(
        "\n".join(
            [
                "# Written by the virtfleet lab: reaches this lab host's libvirtd over ssh.",
                f"Port {plan.ssh_port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {base_dir / 'ssh' / 'hostkeys' / f'{plan.name}_ed25519'}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {pidfile}",
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "UseDNS no",
                "PrintMotd no",
                "X11Forwarding no",
                # Console tunnels to the guests' VNC ports on 127.0.0.1.
                "AllowTcpForwarding yes",
            ]
        )
        + "\n"
    )
    proc = subprocess.run(
        ["nsenter", "-t", str(libvirtd_pid), "-m", "-r", SSHD, "-f", str(config), "-E", str(d / "log" / "sshd.log")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=max(1.0, deadline - time.monotonic()),
    )
    if proc.returncode != 0:
        raise LabError(f"{plan.name}: sshd did not start: {proc.stderr.strip()}\n{tail_logs(plan)}")
    while time.monotonic() < deadline:
        pid = read_pidfile(pidfile)
        if pid is not None:
            return pid
        time.sleep(0.02)
    raise LabError(f"{plan.name}: sshd wrote no pidfile {pidfile}\n{tail_logs(plan)}")
