"""Template pages: the Templates list, the deploy form (names previewed as they are typed), and the
mark / unmark buttons of a VM's page. Each asks for a job; refusals are shown beside their field."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from core import access
from core.errors import Forbidden, ServiceError
from core.net import client_ip
from core.shortcuts import get_or_404, job_requested, run_job_request
from vms.selectors import vm_get

from . import services
from . import templates as T
from .models import SSHKey
from .selectors import template_rows

FIELDS = [
    "count",
    "name_pattern",
    "first",
    "disk_mode",
    "copy_bandwidth",
    "ci_hostname",
    "ci_user",
    "ci_user_data",
    "ci_network_config",
]
FLAGS = ["start", "cloud_init"]
SHOWN = {"count", "name_pattern", "first", "host", "spread", "disk_mode", "copy_bandwidth", "ci_hostname", "ci_user", "ci_password",
         "ci_ssh_keys", "ci_user_data", "ci_network_config"}  # fmt: skip


@login_required
def template_list(request):
    """Every template the user may see: host, OS, disks, size, the hosts holding a copy, Deploy."""
    rows = template_rows(user=request.user)
    return render(request, "templates/list.html", {"rows": rows, "may_configure": access.may(request.user,
                                                                                              access.CONFIGURE)})  # fmt: skip


def _form_params(request, template) -> dict:
    post = request.POST
    data: dict = {name: post.get(name, "") for name in FIELDS if name in post}
    for name in FLAGS:
        data[name] = post.get(name) in ("on", "1", "true")
    target = post.get("target", "")
    if target == "spread":
        data["spread"] = True
    elif target.isdigit():
        data["host"] = int(target)
    if not data.get("cloud_init"):
        for name in T.CLOUD_INIT:
            data.pop(name, None)
    else:
        keys = [k.public_key for k in SSHKey.objects.filter(user=request.user,
                                                            pk__in=[int(i) for i in post.getlist("saved_key") if i.isdigit()])]  # fmt: skip
        data["ci_ssh_keys"] = [*keys, *[line for line in post.get("ci_ssh_keys", "").splitlines() if line.strip()]]
        if post.get("ci_password"):
            data["ci_password"] = post["ci_password"]
    return data


@login_required
@require_http_methods(["GET", "POST"])
def template_deploy(request, uuid):
    """The deploy form: how many, their names, where, cloud-init, linked or full, start."""
    template = get_or_404(request, lambda: vm_get(uuid=uuid), access.CONFIGURE, what=T.DEPLOY)
    errors: dict[str, str] = {}
    if not template.template:
        errors["form"] = f"{template.name} is not a template; mark it as one on its page first."
    if request.method == "POST" and not errors:
        params = _form_params(request, template)
        try:
            job = T.template_deploy_request(template=template, params=params, user=request.user, ip=client_ip(request))
        except Forbidden:
            raise
        except ServiceError as exc:
            field = (exc.field or "").removeprefix("params.").split(".")[0]
            if field == "spread":
                field = "host"
            errors[field if field in SHOWN else "form"] = exc.message
        else:
            job_requested(request, job, f"Deploying {params.get('count') or 1} VM(s) from {template.name}")
            return redirect("jobs:detail", job.pk)
    hosts = list(services.configurable_hosts(request.user))
    rows = [r for r in template_rows(user=request.user) if r.vm.pk == template.pk]
    return render(request, "templates/deploy.html", {
        "template": template, "row": rows[0] if rows else None, "hosts": hosts, "errors": errors,
        "v": request.POST if request.method == "POST" else {}, "keys": SSHKey.objects.filter(user=request.user),
        "max_count": T.MAX_COUNT,
    })  # fmt: skip


@login_required
@require_POST
def vm_template(request, uuid):
    """Mark a VM as a template (action=mark) or make a template a regular VM (action=unmark)."""
    vm = get_or_404(request, lambda: vm_get(uuid=uuid))
    back = reverse("vms:detail", args=[vm.uuid])
    if request.POST.get("action") == "unmark":
        return run_job_request(request, back, lambda: T.template_unmark_request(vm=vm, user=request.user,
                                                                               ip=client_ip(request)), "Unmarking")  # fmt: skip
    return run_job_request(request, back, lambda: T.template_mark_request(vm=vm, user=request.user,
                                                                         ip=client_ip(request)), "Marking as a template")  # fmt: skip
