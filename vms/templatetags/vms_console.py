"""``{% console_button vm %}``: the VM page's Console button, enabled when the console can open."""

from django import template

from vms.console import CONSOLE_STATES, console_refusal

register = template.Library()


@register.inclusion_tag("vms/_console_button.html")
def console_button(vm):
    return {"vm": vm, "refusal": console_refusal(vm)}


@register.simple_tag
def console_states() -> str:
    """The power states in which a console can open, for live.js (one list, kept here)."""
    return " ".join(sorted(CONSOLE_STATES))


@register.simple_tag
def console_unavailable(vm) -> str:
    """``{% console_unavailable vm as why %}``: why the fleet table offers no console link ("" = it does)."""
    return console_refusal(vm)
