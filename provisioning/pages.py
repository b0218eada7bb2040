"""What provisioning adds to other pages (core.pages): Hardware and Edit XML on a VM's page, a VM's
pending changes, its template mark (mark, unmark, deploy), New VM on a host's page; Templates in
the main navigation."""

from core import access
from core.pages import NavItem, Section, register_nav, register_section


def _vm(request, vm) -> dict:
    return {"may_configure": access.may(request.user, access.CONFIGURE, vm)}


def _host(request, host) -> dict:
    return {"may_configure": access.may(request.user, access.CONFIGURE, host)}


def _template(request, vm) -> dict:
    from jobs.models import Job

    from .templates import DEPLOY

    deploy = Job.objects.active().filter(kind=DEPLOY, vm=vm).first() if vm.template else None
    return {"may_configure": access.may(request.user, access.CONFIGURE, vm), "deploying": deploy}


def register() -> None:
    register_section(Section(page="vm", slot="main", name="hardware", order=5,
                             template="provisioning/_vm_hardware.html", context=_vm))  # fmt: skip
    register_section(Section(page="vm", slot="main", name="template", order=4,
                             template="provisioning/_vm_template.html", context=_template))  # fmt: skip
    register_nav(NavItem(label="Templates", url_name="templates:list", app_name="templates", order=5))
    register_section(Section(page="host", slot="actions", name="new-vm", order=5,
                             template="provisioning/_host_new_vm.html", context=_host))  # fmt: skip
