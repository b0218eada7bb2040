"""What the console adds to the VM page (core.pages): its Console button."""

from core.pages import Section, register_section
from vms.actions import console_refusal


def register() -> None:
    register_section(Section(page="vm", slot="toolbar-start", name="console-button", order=10,
                             template="console/_console_button.html",
                             context=lambda request, vm: {"refusal": console_refusal(vm)}))  # fmt: skip
