"""Virtfleet's libvirt layer. No Django here; the only package that imports ``libvirt``.

Callers get small frozen dataclasses (DomainInfo, HostInfo, ...) and the exceptions of
``virt.errors``, never raw libvirt objects or libvirtError.
"""

from .connection import ConnectionManager, Credentials, HostConnection, open_connection
from .domains import DomainInfo, DomainStatus, GraphicsInfo, HostInfo, PowerState, power_state
from .errors import (
    AuthenticationFailed,
    DomainNotFound,
    HostUnreachable,
    InvalidURI,
    NetworkNotFound,
    NotFound,
    OperationAborted,
    OperationFailed,
    OperationInvalid,
    OperationTimeout,
    OperationUnsupported,
    PoolNotFound,
    VirtError,
    VolumeNotFound,
)
from .events import DomainEvent, ensure_event_loop
from .uri import LibvirtURI, parse_uri

__all__ = [
    "AuthenticationFailed",
    "ConnectionManager",
    "Credentials",
    "DomainEvent",
    "DomainInfo",
    "DomainNotFound",
    "DomainStatus",
    "GraphicsInfo",
    "HostConnection",
    "HostInfo",
    "HostUnreachable",
    "InvalidURI",
    "LibvirtURI",
    "NetworkNotFound",
    "NotFound",
    "OperationAborted",
    "OperationFailed",
    "OperationInvalid",
    "OperationTimeout",
    "OperationUnsupported",
    "PoolNotFound",
    "PowerState",
    "VirtError",
    "VolumeNotFound",
    "ensure_event_loop",
    "open_connection",
    "parse_uri",
    "power_state",
]
