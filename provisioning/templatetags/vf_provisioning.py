"""Small helpers of the provisioning forms: an error beside its field, the NIC choice kept."""

from django import template
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def field_error(errors: dict, name: str) -> str:
    message = (errors or {}).get(name)
    return (
        format_html('<div class="error-text" role="alert" data-error-for="{}">{}</div>', name, message)
        if message
        else ""
    )


@register.simple_tag
def nic_selected(values, index: str, network, first_nic: bool, first_network: bool) -> str:
    """``selected`` for the network a NIC select had (or, on a fresh form, the first NIC on the
    host's default or first running network)."""
    key = f"nic{index}"
    if values:
        return "selected" if values.get(key) == f"network:{network.name}" else ""
    return "selected" if first_nic and network.active and (network.name == "default" or first_network) else ""
