"""The fleet table's console cell: whether the VM's display can open (vms.actions.console_refusal)."""

from django import template

from vms.actions import CONSOLE_STATES, console_refusal

register = template.Library()


@register.simple_tag
def console_states() -> str:
    """The power states in which a console can open, for live.js (one list, kept here)."""
    return " ".join(sorted(CONSOLE_STATES))


@register.simple_tag
def console_unavailable(vm) -> str:
    """``{% console_unavailable vm as why %}``: why the fleet table offers no console link ("" = it does)."""
    return console_refusal(vm)
