"""Pages: New VM (with the best host), a VM from XML, the XML editor (with its diff), the hardware
page, the user's SSH keys. Each form asks for a job; refusals are shown beside the field they are
about, with what the user typed kept."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from rest_framework import serializers

from core import access
from core.errors import Forbidden, ServiceError
from core.net import client_ip
from core.shortcuts import get_or_404, job_requested, run_job_request
from hosts.models import Host
from networks.models import Network
from storage.models import Volume
from virt import VirtError
from virt import hardware as hw
from vms.selectors import vm_get

from . import params as P
from . import services
from .clones import clone_form
from .models import SSHKey
from .planner import is_iso
from .selectors import create_options

FORM_FIELDS = [
    "name", "os", "source", "iso_volume", "image_volume", "disk_pool", "disk_size", "disk_format", "disk_bus",
    "vcpus", "max_vcpus", "memory_mib", "firmware", "machine", "virttype", "description", "ci_hostname",
    "ci_user", "ci_user_data", "ci_network_config",
]  # fmt: skip
FLAGS = ["graphics", "serial", "autostart", "start", "secure_boot"]
# the fields the New VM form shows an error beside; any other refusal is shown above the form
SHOWN_ERRORS = {
    "host", "name", "os", "source", "iso_volume", "image_volume", "disk_pool", "disk_size", "extra_disks", "vcpus",
    "max_vcpus", "memory_mib", "firmware", "secure_boot", "machine", "disk_bus", "nics", "ci_hostname", "ci_user",
    "ci_password", "ci_ssh_keys", "ci_user_data", "ci_network_config",
}  # fmt: skip


def _form_params(post) -> dict:
    """The New VM form's fields as the job's options (empty numbers are defaults)."""
    data: dict = {}
    for name in FORM_FIELDS:
        if name not in post:
            continue
        value = post.get(name, "")
        if name in ("iso_volume", "image_volume", "disk_pool"):
            data[name] = int(value) if value.isdigit() else None
        elif (name in ("vcpus", "max_vcpus", "memory_mib") and value == "") or (
            name == "disk_size" and value.strip() == ""
        ):
            continue
        else:
            data[name] = value
    for name in FLAGS:
        data[name] = post.get(name) in ("on", "1", "true")
    extra = [s.strip() for s in post.get("extra_disks", "").split(",") if s.strip()]
    if extra:
        data["extra_disks"] = extra
    if data.get("source") == "cloud":
        keys = [k.public_key for k in SSHKey.objects.filter(pk__in=[int(i) for i in post.getlist("saved_key")
                                                                     if i.isdigit()])]  # fmt: skip
        typed = post.get("ci_ssh_keys", "")
        data["ci_ssh_keys"] = [*keys, *[line for line in typed.splitlines() if line.strip()]]
        if post.get("ci_password"):
            data["ci_password"] = post["ci_password"]
    else:
        for name in ("ci_hostname", "ci_user", "ci_user_data", "ci_network_config"):
            data.pop(name, None)
    nics = []
    for i in range(4):
        where = post.get(f"nic{i}", "")
        if not where:
            continue
        kind, _, source = where.partition(":")
        model = post.get(f"nic{i}_model", "")
        if kind == "bridge" and not source:
            source = post.get(f"nic{i}_bridge", "").strip()
        nics.append({"network": source, "model": model} if kind == "network" else {"bridge": source, "model": model})
    data["nics"] = nics
    return data


def _field_of(exc: ServiceError) -> str:
    field = exc.field or ""
    return field.removeprefix("params.").split(".")[0]


def _hosts_for(request) -> list[Host]:
    return list(services.configurable_hosts(request.user))


@login_required
@require_http_methods(["GET", "POST"])
def vm_new(request):
    """The New VM form: a host (or the best one), an OS preset, an install source, and the rest."""
    if not access.may(request.user, access.CONFIGURE):
        access.require(request.user, access.CONFIGURE, None, what="vm.create")
    hosts = _hosts_for(request)
    chosen = request.POST.get("host") if request.method == "POST" else request.GET.get("host", "")
    host = next((h for h in hosts if str(h.pk) == str(chosen)), None)
    errors: dict[str, str] = {}
    values = request.POST if request.method == "POST" else {}
    if request.method == "POST" and "_refresh" not in request.POST:
        params = _form_params(request.POST)
        try:
            job, why = services.vm_create_request(host=host, params=params, user=request.user, ip=client_ip(request))
        except Forbidden:
            raise
        except ServiceError as exc:
            field = _field_of(exc)
            errors[field if field in SHOWN_ERRORS else "form"] = exc.message
        else:
            job_requested(request, job, f"VM {params['name']}" + (f" on {job.host_name} ({why})" if why else ""))
            return redirect("jobs:detail", job.pk)
    shown_host = host or (hosts[0] if hosts and chosen == "" and request.method == "GET" and len(hosts) == 1 else None)
    preview_host = shown_host
    why_best = ""
    if preview_host is None and hosts:
        try:
            preview_host, why_best = services.host_choose(user=request.user, memory_mib=1024)
        except ServiceError as exc:
            why_best = exc.message
    opts = create_options(host=preview_host, hosts=hosts, user=request.user)
    return render(request, "provisioning/new.html", {
        "opts": opts, "host": shown_host, "preview_host": preview_host, "why_best": why_best, "errors": errors,
        "v": values, "sources": P.SOURCE_WORDS, "nic_models": ["", "virtio", "e1000e", "e1000", "rtl8139"],
    })  # fmt: skip


@login_required
@require_http_methods(["GET", "POST"])
def vm_define(request):
    """A VM from a pasted or uploaded domain XML: defined (persistent) or created (transient)."""
    hosts = _hosts_for(request)
    if not hosts:
        access.require(request.user, access.CONFIGURE, None, what="vm.define_xml")
    errors: dict[str, str] = {}
    values = request.POST if request.method == "POST" else {}
    if request.method == "POST":
        host = next((h for h in hosts if str(h.pk) == request.POST.get("host", "")), None)
        xml = request.POST.get("xml", "")
        upload = request.FILES.get("xml_file")
        if upload is not None:
            if upload.size > P.MAX_XML:
                errors["xml"] = f"The file is larger than {P.MAX_XML // 1024} KiB; a domain XML is far smaller."
            else:
                xml = upload.read().decode("utf-8", errors="replace")
        params = {"xml": xml, **{f: request.POST.get(f) in ("on", "1") for f in ("transient", "start", "autostart")}}
        if host is None:
            errors["host"] = "Choose the host to define it on."
        if not errors:
            try:
                job = services.vm_define_request(host=host, params=params, user=request.user, ip=client_ip(request))
            except Forbidden:
                raise
            except ServiceError as exc:
                errors[_field_of(exc) or "xml"] = exc.message
            else:
                job_requested(request, job, "VM from XML")
                return redirect("jobs:detail", job.pk)
    return render(request, "provisioning/define.html", {"hosts": hosts, "errors": errors, "v": values})


def _vm(request, uuid, action=access.VIEW, what=""):
    return get_or_404(request, lambda: vm_get(uuid=uuid), action, what=what)


@login_required
@require_http_methods(["GET", "POST"])
def vm_xml(request, uuid):
    """The XML editor: the definition (its secrets hidden), a diff of the edit, then save."""
    vm = _vm(request, uuid, access.CONFIGURE, what="vm.edit_xml")
    try:
        current = hw.editable_xml(_conn(vm), str(vm.uuid))
    except (VirtError, ServiceError) as exc:
        messages.error(request, f"The definition cannot be read now: {getattr(exc, 'message', exc)}")
        return redirect("vms:detail", vm.uuid)
    edited, diff, error = current, "", ""
    if request.method == "POST":
        edited = request.POST.get("xml", "")
        if len(edited) > P.MAX_XML:
            error = "The XML is larger than 1 MiB."
        else:
            try:
                from defusedxml.ElementTree import fromstring

                fromstring(edited)
            except Exception as exc:
                error = f"The XML is not well-formed: {exc}"
        if not error:
            diff = hw.xml_diff(current, edited)
            if "back" in request.POST:
                diff = ""  # back to editing what was typed
            elif not diff:
                error = "Nothing changed."
            elif request.POST.get("confirm") == "1" and "back" not in request.POST:
                return run_job_request(request, reverse("vms:detail", args=[vm.uuid]), lambda: services.vm_change_request(
                    vm=vm, change="xml", params={"xml": edited}, user=request.user, ip=client_ip(request)), "Saving the XML")  # fmt: skip
    return render(request, "provisioning/xml.html", {"vm": vm, "xml": edited, "diff": diff, "error": error})


def _conn(vm):
    from hosts.connections import host_connection

    if vm.host.state != "connected":
        raise ServiceError(f"its host {vm.host.name} is {vm.host.get_state_display().lower()}")
    return host_connection(vm.host)


@login_required
def vm_hardware(request, uuid):
    """The hardware page: vCPUs and memory, disks, NICs, CD-ROMs, boot order, name, description."""
    vm = _vm(request, uuid)
    may_change = access.may(request.user, access.CONFIGURE, vm)
    pools = list(vm.host.pools.filter(state="active").order_by("name"))
    volumes = list(Volume.objects.filter(pool__host_id=vm.host_id, pool__state="active").select_related("pool")
                   .order_by("pool__name", "name"))  # fmt: skip
    isos = [v for v in volumes if is_iso(v)]
    boot = hw.boot_order(vm.xml) if vm.xml else []
    devices = [d["target"] for d in vm.disks or ()] + [n["mac"] for n in vm.interfaces or ()]
    return render(request, "provisioning/hardware.html", {
        "vm": vm, "may_change": may_change, "pools": pools, "volumes": [v for v in volumes if v not in isos],
        "isos": isos, "networks": list(Network.objects.filter(host_id=vm.host_id).order_by("name")),
        "boot": boot, "devices": devices,
        "boot_slots": [(n, boot[n - 1] if n <= len(boot) else "") for n in range(1, len(devices) + 1)], "buses": P.DISK_BUSES, "running": vm.state in ("running", "paused"),
        "cdroms": [d for d in vm.disks or () if d.get("device") in ("cdrom", "floppy")],
        "disks": [d for d in vm.disks or () if d.get("device") not in ("cdrom", "floppy")],
    })  # fmt: skip


def _change_params(change: str, post) -> dict:
    flags = {"live", "delete_volume"}
    fields = {
        "vcpus": ["vcpus"], "memory": ["memory_mib"], "rename": ["name"], "describe": ["title", "description"],
        "disk_attach": ["volume", "pool", "size", "format", "bus", "device", "live"],
        "disk_detach": ["target", "delete_volume"], "nic_attach": ["network", "bridge", "model", "live"],
        "nic_detach": ["mac"], "media": ["target", "volume"],
    }.get(change, [])  # fmt: skip
    data: dict = {}
    for name in fields:
        if name in flags:
            data[name] = post.get(name) in ("on", "1", "true")
        elif name in ("volume", "pool"):
            data[name] = int(post[name]) if post.get(name, "").isdigit() else None
        elif name == "size" and not post.get(name):
            continue
        else:
            data[name] = post.get(name, "")
    if change == "nic_attach" and data.get("network", "").startswith("bridge:"):
        data["bridge"], data["network"] = data["network"].removeprefix("bridge:") or post.get("bridge", ""), ""
    if change == "boot_order":
        data["order"] = [k for k in post.getlist("order") if k]
    return data


@login_required
@require_POST
def vm_change(request, uuid, change):
    vm = _vm(request, uuid)
    back = reverse("provisioning:hardware", args=[vm.uuid])
    return run_job_request(request, back, lambda: services.vm_change_request(
        vm=vm, change=change, params=_change_params(change, request.POST), user=request.user,
        ip=client_ip(request)), "The change")  # fmt: skip


CLONE_ERRORS = {"name", "host", "mode", "running", "freeze_source", "disks", "bandwidth", "start"}


def _clone_params(post, disks: list[dict]) -> dict:
    """The clone form's fields as the job's options (a disk's pool only where one was chosen)."""
    data: dict = {"name": post.get("name", "").strip(), "host": post.get("host") or None,
                  "mode": post.get("mode", "full"), "running": post.get("running", ""),
                  "bandwidth": post.get("bandwidth", "") or 0}  # fmt: skip
    for flag in ("freeze_source", "start"):
        data[flag] = post.get(flag) in ("on", "1", "true")
    chosen = []
    for d in disks:
        value = post.get(f"pool_{d['target']}", "")
        if d["action"] == "copy" and value.isdigit():
            chosen.append({"target": d["target"], "pool": int(value)})
    data["disks"] = chosen
    return data


@login_required
@require_http_methods(["GET", "POST"])
def vm_clone(request, uuid):
    """The clone form: name, target host, full or linked, each disk (copied or shared, and where to),
    a running source's pause or live copy, start after."""
    vm = _vm(request, uuid, access.CONFIGURE, what="vm.clone")
    hosts = _hosts_for(request)
    values = request.POST if request.method == "POST" else {}
    chosen = request.POST.get("host", "") if request.method == "POST" else str(vm.host_id)
    host = next((h for h in hosts if str(h.pk) == chosen), vm.host)
    form = clone_form(vm, host)
    for d in form["disks"]:
        posted = request.POST.get(f"pool_{d['target']}", "") if request.method == "POST" else ""
        d["selected"] = posted or str(d["default_pool"] or "")
    errors: dict[str, str] = {}
    if request.method == "POST" and "_refresh" not in request.POST:
        params = _clone_params(request.POST, form["disks"])
        try:
            job = services.vm_clone_request(vm=vm, params=params, user=request.user, ip=client_ip(request))
        except Forbidden:
            raise
        except ServiceError as exc:
            field = _field_of(exc)
            errors[field if field in CLONE_ERRORS else "form"] = exc.message
        else:
            job_requested(request, job, f"Clone of {vm.name}")
            return redirect("jobs:detail", job.pk)
    return render(request, "provisioning/clone.html", {"vm": vm, "hosts": hosts, "host": host, "f": form,
                                                       "errors": errors, "v": values})  # fmt: skip


@login_required
@require_http_methods(["GET", "POST"])
def ssh_keys(request):
    """The user's SSH public keys, offered for cloud-init."""
    error = ""
    if request.method == "POST":
        if "delete" in request.POST:
            SSHKey.objects.filter(user=request.user, pk=request.POST.get("delete")).delete()
            messages.success(request, "Key removed.")
            return redirect("provisioning:ssh-keys")
        name = request.POST.get("name", "").strip()[:100]
        try:
            keys = P.ssh_keys(request.POST.get("public_key", ""))
        except serializers.ValidationError as exc:
            error = str(exc.detail[0])
            keys = []
        if not error and len(keys) != 1:
            error = "Paste one public key (the .pub file's line)."
        if not error and not name:
            name = keys[0].split()[2] if len(keys[0].split()) > 2 else keys[0].split()[0]
        if not error and SSHKey.objects.filter(user=request.user, name=name).exists():
            error = f"You have a key named {name} already."
        if not error:
            SSHKey.objects.create(user=request.user, name=name, public_key=keys[0])
            messages.success(request, f"Key {name} saved.")
            return redirect("provisioning:ssh-keys")
    return render(request, "provisioning/ssh_keys.html", {"keys": SSHKey.objects.filter(user=request.user),
                                                          "error": error, "v": request.POST})  # fmt: skip
