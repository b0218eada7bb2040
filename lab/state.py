"""The lab's recorded state: frozen dataclasses that round-trip through JSON.

The state file (`<base_dir>/state.json`) is the only memory the lab has of what it
started, so it records every PID together with enough to recognise the process
again (see `lab.procs`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError

STATE_FILE = "state.json"
STATE_VERSION = 1


@dataclass(frozen=True)
class LabGuest:
    """One domain the lab defined: stable name and UUID, and the state it was left in."""

    name: str
    uuid: str
    initial_state: str  # 'running' | 'paused' | 'shutoff'
    serial_log: str | None = None  # real guests only: file mirroring the serial console


@dataclass(frozen=True)
class LabNetwork:
    """An isolated libvirt network of one real lab host (see lab.networks): the `lab` network the
    guests' NICs are on, or an extra one offered to a test by `lab.extra_network` / `free_network`."""

    name: str  # 'lab', or 'lab-x<k>' for extra network k
    bridge: str  # 'vflab<index>' ('vflab<index>x<k>'), in the machine's root network namespace
    subnet: str  # CIDR: '10.250.<index>.0/24' ('10.251.<index>.<16k>/28')
    gateway: str  # the host's address on the bridge
    dhcp_start: str
    dhcp_end: str
    index: int  # the host's network index, unique among the lab hosts running on this machine
    mac: str = ""  # the bridge's MAC, by which `down` knows the bridge is the lab's ('' if not set)

    @property
    def netmask(self) -> str:
        return str(ipaddress.ip_network(self.subnet).netmask)

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    def contains(self, address: str) -> bool:
        return ipaddress.ip_address(address) in ipaddress.ip_network(self.subnet)


@dataclass(frozen=True)
class LabHost:
    """One libvirt host of the lab: a libvirtd in its own mount namespace."""

    name: str
    kind: str  # 'real' (QEMU driver, tiny TCG guests) | 'fake' (test driver)
    uri: str  # qemu+tcp://127.0.0.1:<port>/system or test+tcp://127.0.0.1:<port>/default
    unix_uri: str
    host_uuid: str
    tcp_port: int
    dir: str
    dirs: dict[str, str]  # root, etc, run, lib, cache, log: what is bind-mounted where
    pids: dict[str, int]  # 'libvirtd', 'virtlogd', 'sshd' -> PID
    mnt_ns: str  # e.g. 'mnt:[4026532301]', the private mount namespace of the host
    guests: tuple[LabGuest, ...] = ()
    ssh_uri: str | None = None
    ssh_port: int | None = None
    vnc_ports: tuple[int, int] | None = None
    migration_ports: tuple[int, int] | None = None
    network: LabNetwork | None = None  # real hosts: the isolated `lab` network with DHCP

    @property
    def run_dir(self) -> str:
        return self.dirs["run"]

    @property
    def log_dir(self) -> str:
        return self.dirs["log"]

    @property
    def guest_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.guests)

    def serial_log(self, guest: str) -> str:
        """Where this host's virtlogd mirrors the serial console of `guest`.

        The domain XML names `/var/log/libvirt/qemu/<guest>.serial.log`, which each
        host's namespace maps to its own log dir, so the file follows a migrated guest
        to the host that runs it.
        """
        return os.path.join(self.dirs["log"], "qemu", f"{guest}.serial.log")


@dataclass(frozen=True)
class LabState:
    """Everything `up` started, as written to `<base_dir>/state.json`."""

    base_dir: str
    lab_id: str
    port_base: int
    created_at: float
    hosts: tuple[LabHost, ...]
    keeper_pid: int | None = None
    ssh_key: str | None = None
    version: int = STATE_VERSION
    notes: tuple[str, ...] = field(default=())

    @property
    def real_hosts(self) -> tuple[LabHost, ...]:
        return tuple(h for h in self.hosts if h.kind == "real")

    @property
    def fake_hosts(self) -> tuple[LabHost, ...]:
        return tuple(h for h in self.hosts if h.kind == "fake")

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no lab host named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        hosts = []
        for h in data["hosts"]:
            h = dict(h)
            h["guests"] = tuple(LabGuest(**g) for g in h.get("guests", ()))
            for key in ("vnc_ports", "migration_ports"):
                if h.get(key) is not None:
                    h[key] = tuple(h[key])
            if h.get("network") is not None:  # absent from states written before lab networks
                h["network"] = LabNetwork(**h["network"])
            hosts.append(LabHost(**h))
        data = dict(data)
        data["hosts"] = tuple(hosts)
        data["notes"] = tuple(data.get("notes", ()))
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> LabState:
        return cls.from_dict(json.loads(text))


def state_path(base_dir: str | os.PathLike[str]) -> Path:
    return Path(base_dir) / STATE_FILE


def save_state(state: LabState) -> None:
    """Write atomically, so a reader (or a crash) never sees half a file."""
    path = state_path(state.base_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(state.to_json())
    os.replace(tmp, path)


def load_state(base_dir: str | os.PathLike[str]) -> LabState | None:
    path = state_path(base_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return LabState.from_json(text)
    except (ValueError, TypeError, KeyError) as e:
        raise LabError(
            f"cannot read the lab state {path} ({e}); if no lab process of this base dir runs, delete the file"
        ) from e
