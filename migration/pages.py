"""What migration adds to the host and VM pages (core.pages)."""

from core.pages import Section, register_section
from jobs.models import Job
from jobs.selectors import recent_jobs

from .services import MAINTENANCE, host_maintenance_job


def _maintenance(request, host) -> dict:
    job = host_maintenance_job(host=host)
    last = recent_jobs(host_id=host.pk, kind=MAINTENANCE, limit=1)
    return {
        "maintenance_job": job,
        "maintenance_children": Job.objects.filter(parent=job).select_related("target_host") if job else [],
        "last_maintenance": last[0] if last else None,
    }


def register() -> None:
    register_section(Section(page="host", slot="actions", name="maintenance-actions", order=20,
                             template="migration/_host_actions.html", context=_maintenance))  # fmt: skip
    register_section(Section(page="host", slot="banner", name="maintenance",
                             template="migration/_maintenance_panel.html", fragment="migration/_maintenance.html",
                             context=_maintenance))  # fmt: skip
    register_section(Section(page="vm", slot="scripts", name="migration-js", template="migration/_scripts.html"))
    register_section(Section(page="vm", slot="toolbar", name="migrate-button", order=80,
                             template="migration/_vm_button.html"))  # fmt: skip
