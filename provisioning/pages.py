"""What provisioning adds to other pages (core.pages): Hardware and Edit XML on a VM's page, a VM's
pending changes, New VM on a host's page."""

from core import access
from core.pages import Section, register_section


def _vm(request, vm) -> dict:
    return {"may_configure": access.may(request.user, access.CONFIGURE, vm)}


def _host(request, host) -> dict:
    return {"may_configure": access.may(request.user, access.CONFIGURE, host)}


def register() -> None:
    register_section(Section(page="vm", slot="main", name="hardware", order=5,
                             template="provisioning/_vm_hardware.html", context=_vm))  # fmt: skip
    register_section(Section(page="host", slot="actions", name="new-vm", order=5,
                             template="provisioning/_host_new_vm.html", context=_host))  # fmt: skip
