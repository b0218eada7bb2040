"""What snapshots add to other pages (core.pages): the Snapshots section of a VM's page."""

from core.pages import Section, register_section

from .views import vm_snapshots_section


def register() -> None:
    register_section(Section(page="vm", slot="main", name="snapshots", order=30,
                             template="snapshots/_vm_snapshots.html", fragment="snapshots/_vm_snapshots_body.html",
                             context=vm_snapshots_section, script="js/snapshots.js"))  # fmt: skip
