"""What vms adds to the host page (core.pages): the table of the host's VMs."""

from core.pages import Section, register_section

from .views import vm_table_context


def host_vms(request, host) -> dict:
    return {**vm_table_context(request, host_id=host.pk), "hide_host_column": True}


def register() -> None:
    register_section(Section(page="host", slot="main", name="vms", template="vms/_host_vms.html",
                             fragment="vms/_vm_table.html", context=host_vms))  # fmt: skip
