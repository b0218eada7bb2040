"""What networks add to other pages (core.pages): the host's networks, the VM's NICs, a Networks tab."""

from core.pages import NavItem, Section, register_nav, register_section

from .views import host_networks, vm_nics_section


def register() -> None:
    register_nav(NavItem(label="Networks", url_name="networks:list", app_name="networks", order=30))
    register_section(Section(page="host", slot="main", name="networks", order=20,
                             template="networks/_host_networks.html", fragment="networks/_host_networks_table.html",
                             context=host_networks, script="js/networks.js"))  # fmt: skip
    register_section(Section(page="vm", slot="main", name="nics", order=20, template="networks/_vm_nics.html",
                             fragment="networks/_vm_nics_table.html", context=vm_nics_section,
                             script="js/networks.js"))  # fmt: skip
