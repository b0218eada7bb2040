"""Templates: marking a VM as one, and deploying N VMs from one — the options, the plan, the job
kinds and the services that ask for them.

- ``vm.template_mark`` / ``vm.template_unmark``: the mark in the domain's metadata (virt.template),
  with a new generation at every mark; a running or transient VM is refused, autostart is turned
  off; unmarking is refused while a deploy from it runs or while VMs on its host are linked to its
  disks (starting it would write to their base).
- ``template.deploy``: one job for the whole request. It checks the names on every target host in
  libvirt, makes sure each target host has the template's disks (on the template's own host its
  disks are the base; elsewhere a copy streamed there once — ``TemplateImage`` — and reused by later
  deploys of the same generation), then starts one child job per VM (``template.deploy_vm``, locked
  by the new VM's name on its host like vm.create) and ends when they have.
- ``template.deploy_vm``: one VM: its disks (a qcow2 overlay on the base, or a full copy), its
  cloud-init seed, its definition (virt.clone.clone_xml: own name, UUID, MACs, VNC password, serial
  log), and its start. Each step is noted before it is done, so undo (failure, cancel, a dead worker)
  removes exactly what it made, never the template's disks or a cached copy.
"""

from __future__ import annotations

import copy
import re
import uuid as uuidlib
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from core import access
from core.errors import ServiceError
from hosts.connections import host_connection
from hosts.models import Host
from jobs import kinds
from jobs.engine import job_request
from jobs.kinds import AwaitChildren, JobCancelled, JobContext, JobFailed, Kind, Outcome, Verdict
from jobs.models import Job, JobStatus
from jobs.params import Flag, WholeNumber
from networks.models import Network
from storage.inventory import pool_reread
from storage.models import StoragePool, Volume
from storage.params import human
from virt import NotFound, OperationAborted, OperationInvalid, VirtError
from virt import builder as vb
from virt import clone as vc
from virt import hardware as hw
from virt import storage as vs
from virt import template as vt
from vms.kinds import vm_subject
from vms.models import VM

from . import params as P
from .kinds import _after_create, _judge_create, _make_seed, _undo_create, after_change, host_refusal, new_vm_subject
from .kinds import plain_refusal as _plain
from .models import TemplateImage
from .planner import DISK_FORMATS, spread_hosts
from .services import configurable_hosts

QUEUE = "lifecycle"
MAX_COUNT = 50
OVERLAY_ROOM = 2 * 2**20  # what a new qcow2 overlay and a seed take at first (they grow as the guest writes)
DEPLOY = "template.deploy"
DEPLOY_VM = "template.deploy_vm"
DEPLOY_SECRETS = ("ci_password_hash", "ci_user_data")
CLOUD_INIT = ("ci_hostname", "ci_user", "ci_password", "ci_ssh_keys", "ci_user_data", "ci_network_config")


# --- names -----------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\{([^{}]*)\}")
_N = re.compile(r"^n(?::0?([1-9])d?)?$")


def expand_pattern(pattern: str, *, count: int, first: int = 1, what: str = "name") -> list[str]:
    """The names a pattern gives: ``web-{n}`` → web-1, web-2…; ``web-{n:02}`` → web-01…
    ValueError in words for a pattern that is not one."""
    pattern = (pattern or "").strip()
    if not pattern:
        raise ValueError(f"Give a {what} pattern, such as web-{{n}}.")
    tokens = _TOKEN.findall(pattern)
    for token in tokens:
        if not _N.match(token):
            raise ValueError(f"{{{token}}} is not a placeholder: use {{n}}, or {{n:02}} for 01, 02…")
    rest = _TOKEN.sub("", pattern)
    if "{" in rest or "}" in rest:
        raise ValueError("A lone { or } is not allowed; placeholders are {n} or {n:02}.")
    if count > 1 and not tokens:
        raise ValueError(f"{count} VMs need {count} names: put {{n}} in the pattern (web-{{n}}).")

    def one(n: int) -> str:
        def sub(match: re.Match) -> str:
            width = _N.match(match.group(1)).group(1)  # type: ignore[union-attr]
            return str(n).zfill(int(width)) if width else str(n)

        return _TOKEN.sub(sub, pattern)

    names = [one(n) for n in range(first, first + count)]
    if len(set(names)) != len(names):
        raise ValueError("The pattern gives the same name twice.")
    return names


def hostname_of(name: str) -> str:
    """A VM name as a host name (cloud-init's): dots, underscores → dashes."""
    return re.sub(r"[^A-Za-z0-9-]", "-", name).strip("-")[:63]


# --- options -----------------------------------------------------------------------------------------------
# cloud-init is checked exactly as the New VM form checks it: the same fields and validators
_CloudInit = type("_CloudInit", (serializers.Serializer,), {
    **{name: copy.deepcopy(P.CreateParams._declared_fields[name]) for name in CLOUD_INIT},
    **{f"validate_{n}": getattr(P.CreateParams, f"validate_{n}") for n in CLOUD_INIT if hasattr(P.CreateParams, f"validate_{n}")},
})  # fmt: skip


class DeployParams(_CloudInit):  # type: ignore[valid-type, misc]
    """N VMs from a template (the deploy form and POST /api/templates/<uuid>/deploy/ take the same)."""

    count = WholeNumber(unit="VMs", min_value=1, max_value=MAX_COUNT, default=1)
    name_pattern = serializers.CharField(max_length=80, help_text="web-{n} (1, 2…) or web-{n:02} (01, 02…)")
    first = WholeNumber(unit="for {n}", min_value=0, max_value=99999, default=1, help_text="the first {n}")
    host = serializers.IntegerField(required=False, allow_null=True, default=None,
                                    help_text="id of the host; null: the template's host (unless spread)")  # fmt: skip
    spread = Flag(help_text="spread the VMs over the hosts with room (placement)")
    disk_mode = serializers.ChoiceField(choices=["linked", "full"], default="linked",
                                        help_text="linked: a qcow2 overlay on the host's copy of the template disk")  # fmt: skip
    start = Flag(default=True, help_text="start each VM once made")
    copy_bandwidth = WholeNumber(unit="MiB/s", min_value=0, max_value=100000, default=0,
                                 help_text="at most this many MiB/s for a copy of the template's disk to another "
                                           "host (0: as fast as it goes)")  # fmt: skip
    cloud_init = Flag(default=True, help_text="give each VM a NoCloud seed (hostname: its name)")
    placement = serializers.ListField(child=serializers.DictField(), required=False, default=list,
                                      help_text="set by Virtfleet: where each VM goes")  # fmt: skip

    def validate_ci_hostname(self, value):
        return value.strip()

    def validate(self, data):
        try:
            names = expand_pattern(data["name_pattern"], count=data["count"], first=data["first"])
        except ValueError as exc:
            raise serializers.ValidationError({"name_pattern": str(exc)}) from None
        for name in names:
            try:
                P.check_vm_name(name)
            except serializers.ValidationError:
                raise serializers.ValidationError({"name_pattern": f"{name[:70]!r} is not a VM name: "
                                                   "1 to 63 letters, digits, dots, dashes or underscores, starting "
                                                   "with a letter or digit."}) from None  # fmt: skip
        if data["host"] and data["spread"]:
            raise serializers.ValidationError({"host": "Choose a host or spread, not both."})
        cloud = [f for f in CLOUD_INIT if data.get(f)]
        if cloud and not data["cloud_init"]:
            raise serializers.ValidationError({cloud[0]: "These are cloud-init settings: turn cloud-init on."})
        if data["cloud_init"]:
            hostnames = [hostname_of(n) for n in names]
            if data["ci_hostname"]:
                try:
                    hostnames = expand_pattern(data["ci_hostname"], count=data["count"], first=data["first"],
                                               what="host name")  # fmt: skip
                except ValueError as exc:
                    raise serializers.ValidationError({"ci_hostname": str(exc)}) from None
            bad = next((h for h in hostnames if not P.HOSTNAME.match(h)), None)
            if bad is not None:
                raise serializers.ValidationError({"ci_hostname": f"{bad[:70]!r} is not a host name (1 to 63 letters, "
                                                   "digits or dashes, no dots)."})  # fmt: skip
        if (data.get("ci_password") or data["ci_ssh_keys"]) and not data["ci_user"] and not data["ci_user_data"]:
            raise serializers.ValidationError({"ci_user": "Give the user the password or keys are for."})
        password = data.pop("ci_password", "")
        data["ci_password_hash"] = P.vseed.hash_password(password) if password else ""
        return data


def names_of(params: dict) -> list[str]:
    return expand_pattern(params["name_pattern"], count=params["count"], first=params["first"])


def hostnames_of(params: dict) -> list[str]:
    if params["ci_hostname"]:
        return expand_pattern(params["ci_hostname"], count=params["count"], first=params["first"], what="host name")
    return [hostname_of(n) for n in names_of(params)]


# --- what a template is made of -------------------------------------------------------------------------
@dataclass(frozen=True)
class TemplateDisk:
    """A disk of the template that each new VM gets its own of (clone_plan's "copy")."""

    target: str
    pool: str
    volume: str
    path: str
    format: str
    capacity: int
    length: int  # bytes a copy to another host moves
    backing_path: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _refuse(reason: str, field: str = "") -> ServiceError:
    return ServiceError(reason, code="not_allowed", field=f"params.{field}" if field else "")


def template_disks(vm: VM) -> list[TemplateDisk]:
    """The template's own disks (the volumes a deploy copies or links), from the database copy of its
    XML and its host's pools; ServiceError when one is not a pool's volume."""
    out = []
    for item in vc.clone_plan(vm.xml or "<domain/>"):
        if item.action != "copy":
            continue
        disk = item.disk
        found = Volume.objects.select_related("pool").filter(pool__host_id=vm.host_id)
        found = found.filter(pool__name=disk.pool, name=disk.volume) if disk.volume else found.filter(path=disk.path)
        volume = found.first()
        if volume is None:
            raise _refuse(f"its disk {disk.target} ({disk.label}) is not a volume of a storage pool of {vm.host.name}; "
                          "Virtfleet copies and links pool volumes only")  # fmt: skip
        fmt = volume.format if volume.format in DISK_FORMATS else (disk.format or "raw")
        out.append(TemplateDisk(target=disk.target, pool=volume.pool.name, volume=volume.name, path=volume.path,
                                format=fmt, capacity=volume.capacity, length=volume.length,
                                backing_path=volume.backing_path))  # fmt: skip
    if not out:
        raise _refuse("it has no disk of its own to give the new VMs")
    return out


def cached_copies(template: VM, host: Host, generation: str) -> dict[str, TemplateImage]:
    return {i.target: i for i in TemplateImage.objects.filter(template=template, host=host, generation=generation,
                                                               complete=True)}  # fmt: skip


def _pool_for(host: Host, template: VM, disks: list[TemplateDisk], needed: int) -> StoragePool | None:
    """The pool of ``host`` the copy and the new VMs' disks go to: the template's pool name when the
    host has it running with room, else its running pool with the most room."""
    pools = list(StoragePool.objects.filter(host=host, state="active").order_by("-available", "name"))
    same = next((p for p in pools if p.name == disks[0].pool and p.available >= needed), None)
    return same or next((p for p in pools if p.available >= needed and p.type in ("dir", "fs", "netfs")), None)


@dataclass
class HostPlan:
    host: Host
    pool: str
    copy: bool  # the template's disks must be copied there first
    names: list[str]


def plan_hosts(template: VM, params: dict, disks: list[TemplateDisk]) -> dict[int, HostPlan]:
    """Where each VM goes and the pool each host uses; ServiceError (at its field) when a host
    cannot take them: names taken, no room, a network or backing file it lacks."""
    generation = vt.template_generation(template.xml)
    by_host: dict[int, list[str]] = {}
    hosts: dict[int, Host] = {}
    for item in params["placement"]:
        by_host.setdefault(int(item["host"]), []).append(item["name"])
    for host in Host.objects.filter(pk__in=list(by_host)):
        hosts[host.pk] = host
    plans = {}
    full = params["disk_mode"] == "full"
    for host_id, names in by_host.items():
        host = hosts.get(host_id)
        if host is None:
            raise _refuse("a target host was removed", "host")
        if host.state != "connected":
            raise _refuse(f"host {host.name} is {host.get_state_display().lower()}", "host")
        if host.maintenance and host.pk != template.host_id:
            raise _refuse(f"host {host.name} is in maintenance", "host")
        _names_free(host, names)
        _networks_there(template, host)
        here = host.pk == template.host_id
        copy_needed = not here and len(cached_copies(template, host, generation)) < len(disks)
        if not here:
            _shared_disks_refusal(template, host)
            _backing_there(disks, host)
        per_vm = sum(d.length for d in disks) if full else OVERLAY_ROOM
        needed = per_vm * len(names) + (sum(d.length for d in disks) if copy_needed else 0)
        if here:
            pool = StoragePool.objects.filter(host=host, name=disks[0].pool).first()
            if pool is None or not pool.is_active:
                raise _refuse(f"the template's pool {disks[0].pool} on {host.name} is not running", "host")
            if needed > pool.available:
                raise _refuse(f"the {len(names)} VM(s) need {human(needed)} and pool {pool.name} on {host.name} has "
                              f"{human(pool.available)} free", "count")  # fmt: skip
        else:
            cached = cached_copies(template, host, generation)
            pool = StoragePool.objects.filter(host=host, name=next(iter(cached.values())).pool).first() if cached and not copy_needed else _pool_for(host, template, disks, needed)  # fmt: skip
            if pool is None or pool.available < needed:
                raise _refuse(f"{host.name} has no running pool with {human(needed)} free for the template's disk "
                              f"copy and the {len(names)} VM(s)", "host")  # fmt: skip
        _volume_names_free(pool, names, disks)
        plans[host_id] = HostPlan(host=host, pool=pool.name, copy=copy_needed, names=names)
    return plans


def _names_free(host: Host, names: list[str]) -> None:
    taken = sorted(VM.objects.present().filter(host=host, name__in=names).values_list("name", flat=True))
    if taken:
        raise _refuse(f"{host.name} already has a VM named {', '.join(taken[:5])}; choose another name pattern "
                      "(or another first number)", "name_pattern")  # fmt: skip
    locks = [f"vmname:{host.pk}:{n.lower()}" for n in names]
    busy = Job.objects.active().filter(lock_key__in=locks).first()
    if busy is not None:
        raise _refuse(f"a VM named {busy.target_name or busy.vm_name} is being made by job {busy.pk}; "
                      "choose another name pattern", "name_pattern")  # fmt: skip


def _volume_names_free(pool: StoragePool, names: list[str], disks: list[TemplateDisk]) -> None:
    wanted = [disk_volume_name(n, d) for n in names for d in disks] + [f"{n}-seed.iso" for n in names]
    taken = sorted(Volume.objects.filter(pool=pool, name__in=wanted).values_list("name", flat=True))
    if taken:
        raise _refuse(f"pool {pool.name} on {pool.host.name} already has a volume named {', '.join(taken[:3])}; "
                      "choose another name pattern or remove it", "name_pattern")  # fmt: skip


def _networks_there(template: VM, host: Host) -> None:
    wanted = {i.get("source") for i in template.interfaces or () if i.get("type") == "network" and i.get("source")}
    have = set(Network.objects.filter(host=host, name__in=wanted).values_list("name", flat=True))
    if wanted - have:
        raise _refuse(f"{host.name} has no network named {', '.join(sorted(wanted - have))}, which the template's "
                      "NICs are on", "host")  # fmt: skip


def _shared_disks_refusal(template: VM, host: Host) -> None:
    shared = [
        d for d in template.disks or () if d.get("device") == "disk" and (d.get("readonly") or d.get("shareable"))
    ]
    if shared:
        raise _refuse(f"the template shares disk {shared[0].get('target')} with its VMs, and {host.name} does not "
                      "have it; deploy on the template's host", "host")  # fmt: skip


def _backing_there(disks: list[TemplateDisk], host: Host) -> None:
    """A template disk that is itself an overlay (of a cloud image) is copied as it is: the target
    host must have its backing file at the same path (the same image, such as the same cloud image)."""
    for disk in disks:
        if disk.backing_path and not Volume.objects.filter(pool__host=host, path=disk.backing_path).exists():
            raise _refuse(f"the template's disk {disk.target} is an overlay of {disk.backing_path}, which {host.name} "
                          "lacks; put the same image at that path there, or deploy on the template's host", "host")  # fmt: skip


def disk_volume_name(name: str, disk: TemplateDisk | dict) -> str:
    target = disk.target if isinstance(disk, TemplateDisk) else disk["target"]
    return f"{name}-{target}.qcow2"


def cache_volume_name(template_name: str, target: str, generation: str, fmt: str) -> str:
    return f"{template_name}-{target}-{generation[:8]}.{'qcow2' if fmt == 'qcow2' else 'img'}"


# --- mark and unmark ---------------------------------------------------------------------------------------


def _check_mark(vm: VM, params: dict, **_) -> str:
    why = host_refusal(vm)
    if why:
        return why
    if vm.template:
        return "it is a template already"
    if not vm.persistent:
        return "it is transient: only a defined VM can be a template (define it first)"
    if vm.state != "shutoff":
        return f"it is {vm.get_state_display().lower()}: shut it down first (a template never runs)"
    return ""


def _mark(ctx: JobContext) -> Outcome:
    try:
        marked = vt.template_mark(ctx.conn, ctx.uuid, marked_at=timezone.now().isoformat(timespec="seconds"))
    except OperationInvalid as exc:
        raise JobFailed(f"cannot mark it: {exc.message}", code="not_allowed") from None
    said = "marked as a template: it never starts, and new VMs are made from it"
    if marked.autostart_was_on:
        said += "; autostart turned off (a template does not start with its host)"
    return Outcome(said, {"generation": marked.generation, "autostart_turned_off": marked.autostart_was_on})


def _disk_paths(vm: VM) -> list[str]:
    try:
        return [d.path for d in template_disks(vm)]
    except ServiceError:
        return [d.get("path") for d in vm.disks or () if d.get("path")]


def _linked_users(vm: VM) -> list[str]:
    paths = _disk_paths(vm)
    rows = Volume.objects.filter(pool__host_id=vm.host_id, backing_path__in=paths).values_list("name", flat=True)
    return sorted(rows)


def _check_unmark(vm: VM, params: dict, **_) -> str:
    why = host_refusal(vm)
    if why:
        return why
    if not vm.template:
        return "it is not a template"
    deploy = Job.objects.active().filter(kind=DEPLOY, vm=vm).first()
    if deploy is not None:
        return f"a deploy from it is running (job {deploy.pk}); wait for it to end"
    users = _linked_users(vm)
    if users:
        return (f"{len(users)} linked VM disk(s) on {vm.host.name} are overlays of its disk ({', '.join(users[:5])}); "
                "a regular VM writes to its disk, which would corrupt them — delete those VMs first")  # fmt: skip
    return ""


def _unmark(ctx: JobContext) -> Outcome:
    vm = ctx.job.vm
    for path in _disk_paths(vm):
        users = [u for u in vt.backed_by(ctx.conn, path) if u != f"domain {vm.name}"]
        if users:
            raise JobFailed(f"its disk {path} is in use by {', '.join(users[:5])}; a regular VM writes "
                            "to its disk, which would corrupt them — delete those first", code="in_use")  # fmt: skip
    vt.template_unmark(ctx.conn, ctx.uuid)
    removed, kept = images_cleanup(template=vm, keep_generation="")
    said = "now a regular VM again (it can start)"
    if removed:
        said += f"; removed its unused disk copies: {', '.join(removed)}"
    if kept:
        said += f"; kept copies other VMs are linked to: {', '.join(kept)}"
    return Outcome(said)


def images_cleanup(*, template: VM, keep_generation: str, host: Host | None = None) -> tuple[list[str], list[str]]:
    """Remove the cached copies of ``template``'s disks of other generations than ``keep_generation``
    (on ``host``, or on every connected host) that no volume or VM uses; returns (removed, kept),
    as "volume on host". A copy a VM's disk uses, or that a volume is backed by, is never removed."""
    rows = TemplateImage.objects.filter(template=template).exclude(generation=keep_generation).select_related("host")
    if host is not None:
        rows = rows.filter(host=host)
    removed, kept = [], []
    for image in rows:
        if image.host.state != "connected" or not image.complete:
            continue  # an incomplete one is its job's to remove
        where = f"{image.volume} on {image.host.name}"
        in_db = any(d.get("path") == image.path for vm in VM.objects.present().filter(host=image.host)
                    .only("disks") for d in vm.disks or ())  # fmt: skip
        try:
            conn = host_connection(image.host)
            users = in_db or vt.backed_by(conn, image.path)
            if users:
                kept.append(where)
                continue
            vs.volume_delete(conn, image.pool, image.volume)
        except NotFound:
            pass
        except VirtError:
            kept.append(where)
            continue
        image.delete()
        removed.append(where)
        _reread_pool(image.host, image.pool)
    return removed, kept


def _reread_pool(host: Host, pool: str) -> None:
    try:
        pool_reread(host=host, name=pool, conn=host_connection(host))
    except VirtError:
        pass


# --- deploy: the parent job ------------------------------------------------------------------------------
def _check_deploy(template: VM, params: dict, **_) -> str:
    why = host_refusal(template)
    if why:
        return why
    if not template.template:
        return "it is not a template; mark it as one first"
    if template.state != "shutoff":
        return f"the template is {template.get_state_display().lower()}"
    if not vt.template_generation(template.xml):
        return "its mark has not been read yet; wait a moment"
    if len(params["placement"]) != params["count"]:
        raise _refuse("choose a host or spread for the new VMs", "host")
    disks = template_disks(template)
    plan_hosts(template, params, disks)
    return ""


def _deploy_facts(template: VM, params: dict) -> dict:
    disks = template_disks(template)
    plans = plan_hosts(template, params, disks)
    return {"template_uuid": str(template.uuid), "template_name": template.name,
            "generation": vt.template_generation(template.xml), "disks": [d.to_dict() for d in disks],
            "pools": {str(k): v.pool for k, v in plans.items()}}  # fmt: skip


def _deploy(ctx: JobContext) -> Outcome | AwaitChildren:
    p, job = ctx.params, ctx.job
    template = job.vm
    if vt.current_generation(ctx.conn, p["template_uuid"]) != p["generation"]:
        raise JobFailed("the template was unmarked or marked again since the deploy was asked for; ask again",
                        code="template_changed")  # fmt: skip
    if ctx.conn.power_state(p["template_uuid"])[0] != "shutoff":
        raise JobFailed("the template is no longer shut off", code="template_running")
    hosts = {h.pk: h for h in Host.objects.filter(pk__in=[int(k) for k in p["pools"]])}
    names: dict[int, list[str]] = {}
    for item in p["placement"]:
        names.setdefault(int(item["host"]), []).append(item["name"])
    ctx.progress(1, "checking the names on " + ", ".join(hosts[h].name for h in names), record=True)
    for host_id, wanted in names.items():
        taken = sorted(set(wanted) & vb.domain_names(host_connection(hosts[host_id])))
        if taken:
            raise JobFailed(f"{hosts[host_id].name} already has a domain named {', '.join(taken[:5])}; nothing was "
                            "made", code="name_taken")  # fmt: skip
    others = [hosts[h] for h in names if h != template.host_id]
    share = 100 // (len(p["placement"]) + 1)
    bases: dict[int, dict[str, dict]] = {template.host_id: {d["target"]: {"pool": d["pool"], "volume": d["volume"],
                                                                          "path": d["path"], "format": d["format"]}
                                                            for d in p["disks"]}}  # fmt: skip
    for i, host in enumerate(others):
        if ctx.cancelled():
            raise JobCancelled("cancelled before its VMs were made")
        bases[host.pk] = _bases_on(ctx, template, host, p["pools"][str(host.pk)],
                                   (share * i // len(others), share * (i + 1) // len(others)))  # fmt: skip
    return _start_children(ctx, template, hosts, bases)


def _bases_on(ctx: JobContext, template: VM, host: Host, pool: str, span: tuple[int, int]) -> dict[str, dict]:
    """The template's disks on another host: the cached copies of this generation when they are
    there (checked in libvirt), else copied now — noted first, so undo removes a half-made copy."""
    p = ctx.params
    gen = p["generation"]
    dst = host_connection(host)
    found = cached_copies(template, host, gen)
    out = {}
    disks = p["disks"]
    for j, disk in enumerate(disks):
        image = found.get(disk["target"])
        if image is not None:
            try:
                info = vs.volume_info(dst, image.pool, image.volume)
            except NotFound:
                image.delete()  # gone behind Virtfleet's back: copied again below
                image = None
            else:
                ctx.progress(span[0], f"reusing the copy of {disk['target']} on {host.name} ({image.volume}, made "
                             f"{timezone.localtime(image.made_at):%Y-%m-%d %H:%M}): no copy needed", record=True)  # fmt: skip
                out[disk["target"]] = {"pool": image.pool, "volume": image.volume, "path": info.path,
                                       "format": image.format}  # fmt: skip
                continue
        removed, _kept = images_cleanup(template=template, keep_generation=gen, host=host)
        if removed:
            ctx.progress(span[0], f"removed unused copies of an earlier generation: {', '.join(removed)}", record=True)
        out[disk["target"]] = _copy_disk(ctx, template, host, dst, pool, disk, span, j, len(disks))
    return out


def _copy_disk(ctx, template: VM, host: Host, dst, pool: str, disk: dict, span, j: int, of: int) -> dict:
    p = ctx.params
    name = cache_volume_name(template.name, disk["target"], p["generation"], disk["format"])
    if name in vs.pool_volume_names(dst, pool):
        raise JobFailed(f"pool {pool} on {host.name} already has a volume named {name} that is not a complete copy; "
                        "remove it and deploy again", code="volume_taken")  # fmt: skip
    low, high = span[0] + (span[1] - span[0]) * j // of, span[0] + (span[1] - span[0]) * (j + 1) // of
    ctx.progress(low, f"copying the template's disk {disk['target']} ({human(disk['length'])}) to {pool} on "
                 f"{host.name}", record=True)  # fmt: skip
    # a row of an earlier copy that did not finish, whose volume is gone (this job holds the template's lock)
    TemplateImage.objects.filter(host=host, pool=pool, volume=name, complete=False).delete()
    image = TemplateImage.objects.create(template=template, target=disk["target"], host=host, pool=pool, volume=name,
                                         path="", format=disk["format"], generation=p["generation"],
                                         size=disk["length"], made_by_id=ctx.job.pk)  # fmt: skip
    copying = [*(ctx.job.result or {}).get("copying", []), {"host": host.pk, "pool": pool, "volume": name,
                                                             "image": image.pk}]  # fmt: skip
    ctx.note(copying=copying)
    vs.volume_create(dst, pool, vs.volume_xml(name=name, capacity=disk["length"], format="raw", allocation=0))
    length = disk["length"]

    def progress(transfer: vs.Transfer) -> None:
        ctx.progress(low + (high - low) * transfer.total // max(1, length),
                     f"copying {disk['target']} to {host.name}: {human(transfer.total)} of {human(length)}")  # fmt: skip

    try:
        vs.copy(ctx.conn, disk["pool"], disk["volume"], dst, pool, name, length=length, on_progress=progress,
                should_cancel=ctx.cancelled, bandwidth=int(p.get("copy_bandwidth") or 0) * 2**20)  # fmt: skip
    except OperationAborted:
        raise JobCancelled(f"cancelled during the copy to {host.name}") from None
    vs.pool_refresh(dst, pool)
    info = vs.volume_info(dst, pool, name)
    TemplateImage.objects.filter(pk=image.pk).update(complete=True, path=info.path, format=info.format or disk["format"],
                                                     made_at=timezone.now())  # fmt: skip
    ctx.note(copying=[c for c in copying if c["image"] != image.pk],
             copied=[*(ctx.job.result or {}).get("copied", []), name])  # fmt: skip
    _reread_pool(host, pool)
    ctx.progress(high, f"copied {disk['target']} to {pool} on {host.name} ({human(length)}); later deploys there "
                 "reuse it", record=True)  # fmt: skip
    return {"pool": pool, "volume": name, "path": info.path, "format": info.format or disk["format"]}


def _start_children(ctx: JobContext, template: VM, hosts: dict[int, Host], bases: dict) -> AwaitChildren:
    p = ctx.params
    hostnames = hostnames_of(p) if p["cloud_init"] else [""] * len(p["placement"])
    placed: list[str] = []
    try:
        with transaction.atomic():  # every child, or none
            for item, hostname in zip(p["placement"], hostnames, strict=True):
                host = hosts[int(item["host"])]
                target = VM(uuid=uuidlib.uuid4(), host=host, name=item["name"])
                ctx.request_child(kind=DEPLOY_VM, target=target, params={"plan": _vm_plan(p, template, target, hostname,
                                                                                         bases[host.pk])})  # fmt: skip
                placed.append(f"{item['name']} on {host.name}")
    except ServiceError as exc:
        raise JobFailed(f"the VMs could not be started: {exc.message}", code="child_refused") from None
    return AwaitChildren(f"making {len(placed)} VM(s): {', '.join(placed)}")


def _vm_plan(p: dict, template: VM, target: VM, hostname: str, bases: dict) -> dict:
    uuid = str(target.uuid)
    pool = p["pools"][str(target.host_id)]
    full = p["disk_mode"] == "full"  # a full copy is made in its base's pool (createXMLFrom)
    disks = [{"target": d["target"], "pool": bases[d["target"]]["pool"] if full else pool,
              "name": disk_volume_name(target.name, d),
              "capacity": d["capacity"], "base": bases[d["target"]]} for d in p["disks"]]  # fmt: skip
    seed = {"pool": pool, "name": f"{target.name}-seed.iso", "role": "seed"} if p["cloud_init"] else None
    cloud_init = {}
    if seed:
        cloud_init = {"hostname": hostname, "user": p["ci_user"], "password_hash": p["ci_password_hash"],
                      "ssh_keys": list(p["ci_ssh_keys"]), "user_data": p["ci_user_data"],
                      "network_config": p["ci_network_config"], "instance_id": f"iid-{uuid}"}  # fmt: skip
    return {"uuid": uuid, "name": target.name, "template_uuid": p["template_uuid"], "template_name": template.name,
            "template_host": template.host_id, "mode": p["disk_mode"], "start": p["start"], "disks": disks,
            "seed": seed, "cloud_init": cloud_init,
            "volumes": [{"pool": d["pool"], "name": d["name"]} for d in disks] + ([seed] if seed else [])}  # fmt: skip


def _deploy_done(parent: Job, children: list[Job]) -> Outcome | JobFailed | JobCancelled:
    children = sorted(children, key=lambda c: c.pk)
    ok = [c for c in children if c.status == JobStatus.SUCCEEDED]
    bad = [c for c in children if c.status != JobStatus.SUCCEEDED]
    copied = (parent.result or {}).get("copied") or []
    where = f" (the template's disk copied once: {', '.join(copied)})" if copied else ""
    made = ", ".join(f"{c.target_name.removeprefix('new VM ')}" for c in ok)
    result = {**(parent.result or {}), "made": [c.params["plan"]["name"] for c in ok],
              "failed": [c.params["plan"]["name"] for c in bad]}  # fmt: skip
    if not bad:
        return Outcome(f"deployed {len(ok)} VM(s) from {parent.vm_name}: {made}{where}", result)
    lines = "; ".join(f"{c.params['plan']['name']}: {c.error or c.message or c.status}" for c in bad[:5])
    text = f"{len(ok)} of {len(children)} VM(s) deployed" + (f" ({made})" if ok else "") + f" — {lines}"
    if parent.cancel_requested:
        return JobCancelled(f"cancelled: {text}", result=result)
    return JobFailed(text, code="children_failed", result=result)


def _undo_deploy(job) -> str:
    """A half-made copy of the template's disk goes (volume and row); complete copies stay (they
    are whole, and later deploys reuse them)."""
    said, kept = [], []
    for item in (job.result or {}).get("copying") or ():
        image = TemplateImage.objects.filter(pk=item["image"]).select_related("host").first()
        if image is not None and image.complete:
            continue
        host = Host.objects.filter(pk=item["host"]).first()
        if host is None:
            continue
        try:
            vs.volume_delete(host_connection(host), item["pool"], item["volume"])
            said.append(f"{item['volume']} on {host.name}")
        except NotFound:
            pass
        except VirtError as exc:
            kept.append(f"{item['volume']} on {host.name} ({exc.message})")
            continue
        TemplateImage.objects.filter(pk=item["image"], complete=False).delete()
        _reread_pool(host, item["pool"])
    words = []
    if said:
        words.append(f"removed the partial copy {', '.join(said)}")
    if kept:
        words.append(f"could not remove {', '.join(kept)}")
    return ("undone: " + "; ".join(words)) if words else ""


def _judge_deploy(job) -> Verdict:
    """A deploy whose worker died: before its children were asked for, nothing of it is left once
    undo has removed a half-made copy; its children, once asked for, end on their own."""
    started = job.children.count()
    if started:
        return Verdict(False, f"it had asked for {started} VM job(s), which end on their own (see them below)",
                       advice="Check them; deploy again for the VMs that are missing.")  # fmt: skip
    return Verdict(False, "it stopped before its VMs were asked for",
                   advice="A half-made copy of the template's disk is removed; deploy again.")  # fmt: skip


def _deploy_title(job) -> str:
    count = (job.params or {}).get("count")
    return f"Deploy {count} VM(s) from template" if count else "Deploy from template"


# --- deploy: one VM ------------------------------------------------------------------------------------------
class DeployVMParams(serializers.Serializer):
    plan = serializers.JSONField(help_text="set by the deploy job")


def _check_deploy_vm(vm: VM, params: dict, **_) -> str:
    if vm.host.state != "connected":
        return f"its host {vm.host.name} is {vm.host.get_state_display().lower()}"
    if VM.objects.present().filter(host=vm.host, name=vm.name).exists():
        return f"{vm.host.name} already has a VM named {vm.name}"
    return ""


def _deploy_vm(ctx: JobContext) -> Outcome:
    plan = ctx.params["plan"]
    conn, uuid, name = ctx.conn, plan["uuid"], plan["name"]
    if name in vb.domain_names(conn):
        raise JobFailed(f"the host already has a domain named {name} (made since the deploy was asked for)",
                        code="name_taken")  # fmt: skip
    existing = set()
    for pool in {v["pool"] for v in plan["volumes"]}:
        existing |= {(pool, n) for n in vs.pool_volume_names(conn, pool)}
    taken = [v["name"] for v in plan["volumes"] if (v["pool"], v["name"]) in existing]
    if taken:
        raise JobFailed(f"pool {plan['volumes'][0]['pool']} already has a volume named {taken[0]}", code="volume_taken")
    made: list[dict] = []
    sources: dict[str, vc.NewSource] = {}
    steps = len(plan["disks"]) + 3
    for i, disk in enumerate(plan["disks"]):
        _stop_if_cancelled(ctx)
        base = disk["base"]
        how = "an overlay of" if plan["mode"] == "linked" else "a full copy of"
        ctx.progress(5 + 70 * i // steps, f"making {disk['name']}: {how} {base['volume']}", record=True)
        made.append({"pool": disk["pool"] if plan["mode"] == "linked" else base["pool"], "name": disk["name"]})
        ctx.note(volumes=made)
        try:
            if plan["mode"] == "linked":
                info = vs.volume_create(conn, disk["pool"], vs.volume_xml(
                    name=disk["name"], capacity=disk["capacity"], format="qcow2", backing_path=base["path"],
                    backing_format=base["format"] if base["format"] in DISK_FORMATS else "raw"))  # fmt: skip
            else:
                xml = vs.volume_xml(name=disk["name"], capacity=disk["capacity"], format="qcow2")
                info = vs.volume_clone(conn, base["pool"], base["volume"], xml)
        except VirtError:
            made.pop()  # not made (libvirt makes a volume whole or not at all)
            ctx.note(volumes=made)
            raise
        sources[disk["target"]] = vc.NewSource(info.path, "qcow2")
    seed = plan.get("seed")
    if seed:
        _stop_if_cancelled(ctx)
        ctx.progress(75, f"writing the cloud-init seed {seed['name']} (hostname {plan['cloud_init']['hostname']})",
                     record=True)  # fmt: skip
        made.append({"pool": seed["pool"], "name": seed["name"]})
        ctx.note(volumes=made)
        _make_seed(ctx, plan, seed)
    _stop_if_cancelled(ctx)
    ctx.progress(85, "defining the VM", record=True)
    template_host = Host.objects.get(pk=plan["template_host"])
    source_xml = hw.config_xml(host_connection(template_host), plan["template_uuid"], secure=True)
    xml = vc.clone_xml(source_xml, name=name, uuid=uuid, disks=sources)
    xml = vt.deploy_xml(xml, seed_pool=seed["pool"] if seed else "", seed_volume=seed["name"] if seed else "")
    ctx.note(volumes=made, defining=True)
    try:
        vb.domain_define(conn, xml)
    except VirtError as exc:
        raise JobFailed(f"libvirt refused the VM's definition: {_plain(exc.message)}", code="define") from None
    ctx.note(volumes=made, defined=True)
    done = [f"{'linked to' if plan['mode'] == 'linked' else 'a full copy of'} {plan['template_name']}"]
    if seed:
        done.append(f"hostname {plan['cloud_init']['hostname']}")
    if plan["start"]:
        ctx.progress(92, "starting it", record=True)
        try:
            conn.start(uuid)
        except VirtError as exc:
            raise JobFailed(f"the VM was defined but did not start: {_plain(exc.message)}", code="start") from None
        done.append("started")
    return Outcome(f"made {name}: " + ", ".join(done), {"uuid": uuid, "volumes": made, "defined": True})


def _stop_if_cancelled(ctx: JobContext) -> None:
    if ctx.cancelled():
        raise JobCancelled("cancelled before it was complete")


# --- the registrations ---------------------------------------------------------------------------------------
for _kind in [
    Kind(name="vm.template_mark", label="Mark as template", handler=_mark, subject=vm_subject, lock="vm", queue=QUEUE,
         right="configure", audit_action="vm.template_mark", check=_check_mark, after=after_change),
    Kind(name="vm.template_unmark", label="Make a regular VM", handler=_unmark, subject=vm_subject, lock="vm",
         queue=QUEUE, right="configure", audit_action="vm.template_unmark", check=_check_unmark, after=after_change),
    Kind(name=DEPLOY, label="Deploy from template", handler=_deploy, subject=vm_subject, lock="vm", queue=QUEUE,
         right="configure", audit_action=DEPLOY, params=DeployParams, check=_check_deploy, facts=_deploy_facts,
         undo=_undo_deploy, judge=_judge_deploy, children_done=_deploy_done, cancellable=True,
         retry_transient=False, secret_params=DEPLOY_SECRETS, title_of=_deploy_title),
    Kind(name=DEPLOY_VM, label="Deploy VM", handler=_deploy_vm, subject=new_vm_subject, lock="vmname", queue=QUEUE,
         right="configure", audit_action=DEPLOY_VM, params=DeployVMParams, check=_check_deploy_vm,
         undo=_undo_create, judge=_judge_create, after=_after_create, cancellable=True, retry_transient=False,
         secret_params=("plan.cloud_init.password_hash", "plan.cloud_init.user_data")),
]:  # fmt: skip
    kinds.register(_kind)


# --- services ------------------------------------------------------------------------------------------------
def template_mark_request(*, vm: VM, user=None, ip: str | None = None) -> Job:
    """Ask for ``vm`` to be marked as a template."""
    return job_request(kind="vm.template_mark", target=vm, user=user, ip=ip)


def template_unmark_request(*, vm: VM, user=None, ip: str | None = None) -> Job:
    """Ask for a template to become a regular VM again."""
    return job_request(kind="vm.template_unmark", target=vm, user=user, ip=ip)


def template_deploy_request(*, template: VM, params: dict, user=None, ip: str | None = None) -> Job:
    """Ask for N VMs from ``template``: on a host (default: the template's), or spread over the
    hosts ``user`` may create VMs on that have room. The placement is chosen here (it needs the
    user's hosts) and checked again by the job kind."""
    if not isinstance(params, dict):
        raise ServiceError("params must be an object.", field="params")
    access.require(user, access.CONFIGURE, template, what=DEPLOY)
    if not template.template:
        raise ServiceError(f"{template.name} is not a template; mark it as one first.", code="not_allowed")
    params = {k: v for k, v in params.items() if k != "placement"}
    checked = _validated(params)
    names = names_of(checked)
    hosts = configurable_hosts(user)
    if checked["spread"]:
        disks = template_disks(template)
        memory = template.memory_kib // 1024 if checked["start"] else 0

        def fits(host: Host, n: int) -> bool:
            return _fits(template, host, disks, n, checked["disk_mode"])

        chosen, why = spread_hosts(count=len(names), memory_mib=memory, hosts=hosts, fits=fits)
        if not chosen:
            raise ServiceError(f"Cannot spread the VMs: {why}.", code="not_allowed", field="params.spread")
    else:
        host = template.host if not checked["host"] else hosts.filter(pk=checked["host"]).first()
        if host is None:
            raise ServiceError("Choose a host you may create VMs on.", code="not_allowed", field="params.host")
        if not access.may(user, access.CONFIGURE, host):
            access.require(user, access.CONFIGURE, host, what=DEPLOY)
        chosen = [host] * len(names)
    params["placement"] = [{"name": n, "host": h.pk} for n, h in zip(names, chosen, strict=True)]
    return job_request(kind=DEPLOY, target=template, params=params, user=user, ip=ip)


def _validated(params: dict) -> dict:
    serializer = DeployParams(data=params)
    if not serializer.is_valid():
        name, errors = next(iter(serializer.errors.items()))
        message = str(errors[0]) if isinstance(errors, list) else str(errors)
        raise ServiceError(message, field="params" if name == "non_field_errors" else f"params.{name}")
    return dict(serializer.validated_data)


def _fits(template: VM, host: Host, disks: list[TemplateDisk], n: int, mode: str) -> bool:
    """Whether ``host`` has a pool with room for an n-th VM from ``template`` (and the copy, when needed)."""
    here = host.pk == template.host_id
    need = (sum(d.length for d in disks) if mode == "full" else OVERLAY_ROOM) * n
    if here:
        pool = StoragePool.objects.filter(host=host, name=disks[0].pool, state="active").first()
        return pool is not None and pool.available >= need
    if any(d.backing_path and not Volume.objects.filter(pool__host=host, path=d.backing_path).exists() for d in disks):
        return False
    copy_needed = len(cached_copies(template, host, vt.template_generation(template.xml))) < len(disks)
    need += sum(d.length for d in disks) if copy_needed else 0
    return _pool_for(host, template, disks, need) is not None
