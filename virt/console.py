"""Console targets: where a domain's VNC server listens and how Virtfleet reaches it.

``graphics_endpoint_from_xml`` reads the live domain XML (read with VIR_DOMAIN_XML_SECURE, so it
carries the VNC password); ``console_target`` decides, from that endpoint and the host's libvirt
URI, whether and how the console proxy can reach it (direct TCP, a unix socket of a local host, or
an SSH tunnel over the host's own credentials); ``connect_target`` opens the byte stream.
No Django here; nothing in this module logs a password.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import select
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field

from defusedxml.ElementTree import fromstring as parse_xml

from .domains import PowerState
from .errors import VirtError
from .uri import LibvirtURI

log = logging.getLogger(__name__)

ANY_ADDRESSES = {"0.0.0.0", "::", "0:0:0:0:0:0:0:0", ""}  # noqa: S104 (we read listen addresses, not bind)
REACHABLE_STATES = {PowerState.RUNNING, PowerState.PAUSED, PowerState.SHUTTING_DOWN, PowerState.CRASHED}
SSH = "/usr/bin/ssh"
_STATE_WORDS = {
    PowerState.SHUTOFF: "shut off",
    PowerState.PMSUSPENDED: "suspended by its guest (to RAM or disk)",
    PowerState.UNKNOWN: "in an unknown state",
}


class ConsoleUnavailable(VirtError):
    """The domain's console cannot be reached; ``code`` names why (for UIs), message says it."""

    def __init__(self, message: str, *, reason: str, hint: str = ""):
        super().__init__(message, hint=hint)
        self.reason = reason


@dataclass(frozen=True)
class ConsoleEndpoint:
    """The VNC server of a domain as its live XML describes it. The password never shows in repr."""

    state: PowerState
    graphics: tuple[str, ...]  # types of every <graphics> device, e.g. ("vnc",), ("spice",), ()
    listen: str = ""  # the address the VNC server listens on ("" for a socket)
    listen_type: str = ""  # address | network | socket | none
    port: int | None = None
    socket: str = ""  # unix socket path (listen type socket)
    password: str = field(default="", repr=False)

    @property
    def has_vnc(self) -> bool:
        return "vnc" in self.graphics

    @property
    def has_password(self) -> bool:
        return bool(self.password)


def graphics_endpoint_from_xml(xml: str, *, state: PowerState) -> ConsoleEndpoint:
    """The first VNC <graphics> of a domain's XML (with its password if the XML is the secure one)."""
    root = parse_xml(xml)
    devices = root.findall("./devices/graphics")
    types = tuple(g.get("type", "") for g in devices)
    vnc = next((g for g in devices if g.get("type") == "vnc"), None)
    if vnc is None:
        return ConsoleEndpoint(state=state, graphics=types)
    listen = vnc.get("listen", "") or ""
    sock = vnc.get("socket", "") or ""
    listen_type = "socket" if sock else ("address" if listen else "")
    for lst in vnc.findall("listen"):
        kind = lst.get("type", "")
        if kind in ("address", "network"):
            listen_type = kind
            listen = lst.get("address", "") or listen
        elif kind == "socket":
            listen_type, sock = "socket", lst.get("socket", "") or sock
        elif kind == "none":
            listen_type = "none"
        break  # libvirt uses the first <listen> for VNC
    try:
        port = int(vnc.get("port", "-1"))
    except ValueError:
        port = -1
    return ConsoleEndpoint(
        state=state,
        graphics=types,
        listen=listen,
        listen_type=listen_type,
        port=port if port > 0 else None,
        socket=sock,
        password=vnc.get("passwd", "") or "",
    )


# --- how to reach it ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SSHRoute:
    """An SSH connection to a host, with libvirt's URI semantics (user, port, keyfile, no_verify)."""

    host: str
    port: int = 22
    user: str = ""
    keyfile: str = ""
    no_verify: bool = False
    known_hosts: str = ""
    command: str = ""  # the URI's command= (another ssh client), as libvirt itself would run


@dataclass(frozen=True)
class VNCTarget:
    """Where the console proxy connects: ``tcp`` (host, port), ``unix`` (path) or ``ssh`` (a tunnel
    through ``ssh`` to host:port as the libvirt host sees them)."""

    kind: str  # tcp | unix | ssh
    host: str = ""
    port: int = 0
    path: str = ""
    ssh: SSHRoute | None = None

    def describe(self) -> str:
        if self.kind == "unix":
            return f"unix socket {self.path}"
        where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        if self.kind == "ssh" and self.ssh is not None:
            user = f"{self.ssh.user}@" if self.ssh.user else ""
            return f"{where} through ssh {user}{self.ssh.host}:{self.ssh.port}"
        return where

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VNCTarget:
        ssh = data.get("ssh")
        return cls(
            kind=str(data["kind"]),
            host=str(data.get("host", "")),
            port=int(data.get("port", 0)),
            path=str(data.get("path", "")),
            ssh=SSHRoute(**ssh) if ssh else None,
        )


def is_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _ssh_route(uri: LibvirtURI, ssh_key_path: str) -> SSHRoute:
    assert uri.host is not None
    return SSHRoute(
        host=uri.host,
        port=uri.port or 22,
        user=uri.user or "",
        keyfile=ssh_key_path or uri.params.get("keyfile", ""),
        no_verify=uri.params.get("no_verify", "0") == "1",
        known_hosts=uri.params.get("known_hosts", ""),
        command=uri.params.get("command", ""),
    )


def console_target(endpoint: ConsoleEndpoint, *, uri: LibvirtURI, ssh_key_path: str = "") -> VNCTarget:
    """Decide how to reach ``endpoint`` on the host of ``uri``, or raise ConsoleUnavailable saying why.

    - shut off / no graphics / SPICE only / no port: refused.
    - a unix socket: only on a local host (qemu:///system, qemu+unix), where the proxy runs.
    - listen 0.0.0.0 or ::: the host's own address from its URI (loopback for a local host).
    - listen on loopback: directly for a local host (or one whose URI address is itself loopback:
      the same machine); through an SSH tunnel for qemu+ssh hosts; otherwise refused.
    - any other address: directly.
    """
    if endpoint.state not in REACHABLE_STATES:
        state = _STATE_WORDS.get(endpoint.state, endpoint.state.value)
        raise ConsoleUnavailable(
            f"the VM is {state}, so it has no screen to show", reason="not_running", hint="start it first."
        )
    if not endpoint.has_vnc:
        if endpoint.graphics:
            kinds = ", ".join(sorted({g.upper() for g in endpoint.graphics}))
            raise ConsoleUnavailable(
                f"the VM has only {kinds} graphics; the in-browser console speaks VNC",
                reason="no_vnc",
                hint="add a VNC graphics device to the VM (it can sit beside SPICE), or use a SPICE client.",
            )
        raise ConsoleUnavailable(
            "the VM has no graphics device, so there is no screen to show",
            reason="no_graphics",
            hint="add a VNC graphics device, or use its serial console.",
        )
    if endpoint.listen_type == "none":
        raise ConsoleUnavailable(
            "the VM's VNC server does not listen anywhere (listen type 'none')",
            reason="not_listening",
            hint="give its VNC graphics a listen address.",
        )
    remote = uri.is_remote
    if endpoint.socket:
        if remote:
            raise ConsoleUnavailable(
                f"the VM's VNC server listens on a unix socket on {uri.host}, which Virtfleet cannot reach",
                reason="remote_socket",
                hint="make its VNC graphics listen on an address (e.g. 127.0.0.1 with a qemu+ssh host).",
            )
        return VNCTarget(kind="unix", path=endpoint.socket)
    if endpoint.port is None:
        raise ConsoleUnavailable(
            "the VM's VNC server has no port (yet)", reason="no_port", hint="wait until it has started."
        )
    listen = endpoint.listen.strip("[]")
    if listen in ANY_ADDRESSES:
        address = uri.host if remote and uri.host else "127.0.0.1"
        return VNCTarget(kind="tcp", host=address, port=endpoint.port)
    if is_loopback(listen):
        if not remote:
            return VNCTarget(kind="tcp", host=listen, port=endpoint.port)
        if uri.is_ssh:
            return VNCTarget(kind="ssh", host=listen, port=endpoint.port, ssh=_ssh_route(uri, ssh_key_path))
        if uri.host and is_loopback(uri.host):
            return VNCTarget(kind="tcp", host=listen, port=endpoint.port)  # the host is this machine
        raise ConsoleUnavailable(
            f"the VM's VNC server listens only on {uri.host}'s own loopback ({listen}), which Virtfleet "
            f"cannot reach over {uri.transport or 'tls'}",
            reason="loopback_remote",
            hint="register the host with a qemu+ssh URI (the console then goes through an SSH tunnel), "
            "or make the VM's VNC listen on an address Virtfleet can reach.",
        )
    return VNCTarget(kind="tcp", host=listen, port=endpoint.port)


# --- connecting ---------------------------------------------------------------------------------------
class ConsoleConnectFailed(VirtError):
    """The VNC server could not be reached (refused, timed out, SSH failed)."""


class VNCStream:
    """A connected byte stream to a VNC server: a socket, plus the ssh process carrying it, if any."""

    def __init__(self, sock: socket.socket, *, process: subprocess.Popen | None = None, target: VNCTarget):
        self.sock = sock
        self.process = process
        self.target = target

    def ssh_error(self) -> str:
        """What ssh printed on stderr, once it has exited (empty otherwise)."""
        if self.process is None or self.process.poll() is None or self.process.stderr is None:
            return ""
        try:
            return self.process.stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(3)


def ssh_command(route: SSHRoute, *, host: str, port: int, timeout: float) -> list[str]:
    """The ssh client command line for a ``-W`` tunnel to host:port on the far side."""
    argv = [
        route.command or SSH,
        "-T",
        "-x",
        "-a",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={max(1, round(timeout))}",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "LogLevel=ERROR",
        "-p",
        str(route.port),
    ]
    if route.keyfile:
        argv += ["-i", route.keyfile, "-o", "IdentitiesOnly=yes"]
    if route.no_verify:
        argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    elif route.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={route.known_hosts}"]
    if route.user:
        argv += ["-l", route.user]
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return [*argv, "-W", target, "--", route.host]


def _ssh_stream(target: VNCTarget, timeout: float) -> VNCStream:
    assert target.ssh is not None
    if not os.access(SSH, os.X_OK):
        raise ConsoleConnectFailed(f"{SSH} is missing", hint="install the openssh-client package.")
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            ssh_command(target.ssh, host=target.host, port=target.port, timeout=timeout),
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,  # a Ctrl-C meant for the proxy does not cut open tunnels first
        )
    except OSError as exc:
        ours.close()
        raise ConsoleConnectFailed(f"could not run ssh: {exc}") from None
    finally:
        theirs.close()
    return VNCStream(ours, process=process, target=target)


def connect_target(target: VNCTarget, *, timeout: float = 5.0) -> VNCStream:
    """Open a stream to ``target`` (raises ConsoleConnectFailed saying what went wrong).

    For an SSH tunnel, a failure of ssh itself shows only once the stream is read (ssh exits and
    the stream ends): ``VNCStream.ssh_error`` then says why.
    """
    if target.kind == "ssh":
        return _ssh_stream(target, timeout)
    try:
        if target.kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(target.path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((target.host, target.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except TimeoutError:
        raise ConsoleConnectFailed(
            f"no answer from the VNC server at {target.describe()} within {timeout:g} s",
            hint="a firewall may block the VNC port between Virtfleet and the host.",
        ) from None
    except OSError as exc:
        raise ConsoleConnectFailed(
            f"cannot connect to the VNC server at {target.describe()}: {exc.strerror or exc}"
        ) from None
    sock.settimeout(None)
    return VNCStream(sock, target=target)


def wait_readable(sock: socket.socket, deadline: float) -> bool:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    return bool(select.select([sock], [], [], remaining)[0])
