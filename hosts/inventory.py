"""The families of libvirt objects a host's inventory holds, registered by the apps that own them.

Domains (vms) are the first family; storage pools and networks follow. Each says how to read all
of a host's objects at once (a full sync), how to re-read one after an event, how to subscribe to
its events, and what to forget when the host is removed. host_sync and the listener run every
family alike, so neither imports the apps above hosts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from virt import HostConnection

    from .models import Host


@dataclass(frozen=True)
class Hint:
    """Something about one object changed: the listener re-reads it (events are hints)."""

    family: str
    key: str  # the object's identity on its host (a domain's UUID, a pool's name...)
    full: bool = True  # False: one cheap read answers it (a suspend/resume changes only the state)


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    moved: int = 0
    gone: int = 0
    objects: int = 0

    def add(self, other: Counts) -> None:
        for name in ("created", "updated", "moved", "gone", "objects"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.moved + self.gone


@dataclass(frozen=True)
class Family:
    name: str  # "domains"
    sync: Callable[[Host, HostConnection], Counts]  # read all of the host's objects, make rows agree
    reread: Callable[[Host, HostConnection, Hint], None]  # one object, after an event
    subscribe: Callable[[HostConnection, Callable[[Hint], None]], None]  # its events → hints
    forget: Callable[[Host], str]  # the host is being removed: drop its rows; says what ("3 VM rows")


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    _FAMILIES[family.name] = family


def families() -> list[Family]:
    return list(_FAMILIES.values())


def family(name: str) -> Family | None:
    return _FAMILIES.get(name)


def apply_fields(row, values: dict) -> bool:
    """Set ``values`` on ``row``; whether any of them changed (so a family saves only what changed)."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed
