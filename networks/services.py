"""Network services: every operation on networks becomes a job (networks.kinds)."""

from __future__ import annotations

from rest_framework import serializers

from core import access
from core.errors import Forbidden, ServiceError
from jobs.engine import job_request
from jobs.models import Job
from vms.models import VM

from .models import Network
from .params import check_name

NETWORK_ACTIONS = {
    "start": "network.start", "stop": "network.stop", "autostart_on": "network.autostart_on",
    "autostart_off": "network.autostart_off", "delete": "network.delete",
}  # fmt: skip
FORCEABLE = ("stop", "delete")


def _name(name: str) -> str:
    try:
        return check_name(name)
    except serializers.ValidationError as exc:
        raise ServiceError(str(exc.detail[0]), field="name") from None


def network_define_request(*, host, name: str, params: dict, user=None, ip=None) -> Job:
    """Define a new network on ``host`` (and start, autostart it as asked): a job. With
    ``params["mode"] == "xml"`` the name may be left empty: the XML's own is taken."""
    if not name and (params or {}).get("mode") == "xml":
        from virt.network import xml_name

        try:
            name = xml_name(params.get("xml") or "")
        except ValueError as exc:
            raise ServiceError(f"{str(exc).capitalize()}.", field="params.xml") from None
    network = Network(host=host, name=_name(name))
    return job_request(kind="network.define", target=network, params=params, user=user, ip=ip)


def _forced(params: dict | None) -> bool:
    return (params or {}).get("force") not in (None, False, "", "0", "false", "off")


def network_job_request(*, network: Network, action: str, params: dict | None = None, user=None, ip=None) -> Job:
    if action not in NETWORK_ACTIONS:
        raise ServiceError(f"Unknown network action {str(action)[:40]!r}; use one of: {', '.join(NETWORK_ACTIONS)}.",
                           field="action")  # fmt: skip
    if action in FORCEABLE and _forced(params) and not access.may(user, access.ADMINISTER):
        access.record_refusal(user=user, action=NETWORK_ACTIONS[action], target=network,
                              message="only administrators may cut running VMs off their network")  # fmt: skip
        raise Forbidden("Only administrators may stop or delete a network that running VMs use.")
    kept = {"force": True} if action in FORCEABLE and _forced(params) else {}
    return job_request(kind=NETWORK_ACTIONS[action], target=network, params=kept if action in FORCEABLE else None,
                       user=user, ip=ip)  # fmt: skip


def dhcp_host_request(*, network: Network, params: dict, user=None, ip=None) -> Job:
    """Add, change or remove a static DHCP entry of ``network`` (live)."""
    return job_request(kind="network.dhcp_host", target=network, params=params, user=user, ip=ip)


def nic_network_request(*, vm: VM, mac: str, network: str, user=None, ip=None) -> Job:
    """Plug a NIC of ``vm`` into another virtual network of its host."""
    return job_request(kind="vm.nic_network", target=vm, params={"mac": mac, "network": network}, user=user, ip=ip)
