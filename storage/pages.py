"""What storage adds to other pages (core.pages): the host's pools, the VM's disks, a Storage tab."""

from core.pages import NavItem, Section, register_nav, register_section

from .views import host_pools, vm_disks


def register() -> None:
    register_nav(NavItem(label="Storage", url_name="storage:list", app_name="storage", order=20))
    register_section(Section(page="host", slot="main", name="pools", order=10, template="storage/_host_pools.html",
                             fragment="storage/_host_pools_table.html", context=host_pools,
                             script="js/storage.js"))  # fmt: skip
    register_section(Section(page="vm", slot="main", name="disks", order=10, template="storage/_vm_disks.html",
                             fragment="storage/_vm_disks_table.html", context=vm_disks,
                             script="js/storage.js"))  # fmt: skip
