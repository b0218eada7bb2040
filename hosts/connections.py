"""Connections to hosts for this process: the bridge from Host rows to virt.ConnectionManager."""

from __future__ import annotations

from django.conf import settings

from virt import ConnectionManager, Credentials, HostConnection

from .models import Host

_manager: ConnectionManager | None = None


def manager() -> ConnectionManager:
    global _manager
    if _manager is None:
        cfg = settings.VIRTFLEET
        _manager = ConnectionManager(
            timeout=cfg["CONNECT_TIMEOUT"], keepalive=(cfg["KEEPALIVE_INTERVAL"], cfg["KEEPALIVE_COUNT"])
        )
    return _manager


def host_credentials(host: Host) -> Credentials:
    return Credentials(ssh_key_path=host.ssh_key_path, username=host.sasl_username, password=host.sasl_password)


def host_connection(host: Host) -> HostConnection:
    """This process's live connection to ``host`` (opened on first use; raises virt errors)."""
    return manager().get(host.pk, host.uri, host_credentials(host))
