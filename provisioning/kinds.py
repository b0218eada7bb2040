"""Creating and changing VMs as job kinds.

- ``vm.create``: a plan (provisioning.planner) executed in steps — volumes, the cloud-init seed,
  define, autostart, start — each noted in the job's result before it is done, so that a failure
  (or a worker's death) removes exactly what the job made: its domain and its volumes, never an
  imported disk or a cloud image, and the job says what it undid.
- ``vm.define_xml``: a pasted domain XML defined (or created transient) with libvirt's validation.
- ``vm.edit_xml`` and the hardware changes (vCPUs, memory, disks, NICs, CD-ROM media, boot order,
  rename, description): live where libvirt and the guest allow, else saved for the next boot and
  shown as pending.

A new VM is locked by its name on its host (it has no row yet); a change locks the VM.
"""

from __future__ import annotations

import logging

from core.errors import ServiceError
from hosts.connections import host_connection
from jobs import kinds
from jobs.kinds import JobContext, JobFailed, Kind, Outcome, Subject, Verdict
from networks.models import Network
from storage.inventory import pool_reread
from storage.models import StoragePool, Volume
from storage.params import human
from storage.selectors import vms_using
from virt import DomainNotFound, NotFound, OperationUnsupported, VirtError
from virt import builder as vb
from virt import hardware as hw
from virt import seed as vseed
from virt import storage as vs
from vms.events import vm_changed
from vms.inventory import vm_reread
from vms.kinds import vm_subject
from vms.models import VM

from . import params as P
from .planner import Refusal, plan_vm

log = logging.getLogger(__name__)
# what a new VM's job keeps for its handler but never shows (audit log, job page, API): the password
# hash, and user-data (operators put secrets in it)
CREATE_SECRETS = ("ci_password_hash", "ci_user_data", "plan.cloud_init.password_hash", "plan.cloud_init.user_data")
QUEUE = "lifecycle"
IMAGE_MAGIC_READ = 64 * 1024


# --- a new VM: its subject is an unsaved VM row (uuid, host, name) ------------------------------------------
def new_vm_subject(vm: VM) -> Subject:
    host = vm.host
    return Subject(noun="VM", name=vm.name, lock=f"vmname:{host.pk}:{vm.name.lower()}", host=host,
                   label=f"new VM {vm.name} on {host.name}")  # fmt: skip


def _check_create(vm: VM, params: dict, **_) -> str:
    try:
        plan_vm(host=vm.host, uuid=str(vm.uuid), params={**params, "name": vm.name})
    except Refusal as exc:  # said beside the field it is about
        raise ServiceError(
            f"Cannot create {vm.name}: {exc.reason}.",
            code="not_allowed",
            field=f"params.{exc.field}" if exc.field else "",
        ) from None
    return ""


def _create_facts(vm: VM, params: dict) -> dict:
    plan = plan_vm(host=vm.host, uuid=str(vm.uuid), params={**params, "name": vm.name})
    return {"uuid": str(vm.uuid), "plan": plan.to_dict()}


def _spec(plan: dict, vnc_password: str) -> vb.DomainSpec:
    return vb.DomainSpec(
        name=plan["name"], uuid=plan["uuid"], memory_mib=plan["memory_mib"], vcpus=plan["vcpus"],
        max_vcpus=plan["max_vcpus"], virttype=plan["virttype"], arch=plan["arch"], machine=plan["machine"],
        emulator=plan["emulator"], firmware=plan["firmware"], secure_boot=plan["secure_boot"],
        disks=tuple(vb.DiskSpec(**d) for d in plan["disks"]), nics=tuple(vb.NicSpec(**n) for n in plan["nics"]),
        graphics=plan["graphics"], vnc_password=vnc_password, vnc_listen=plan["vnc_listen"], serial=plan["serial"],
        serial_log=plan.get("serial_log", ""),
        usb_tablet=plan["usb_tablet"] and plan["graphics"], os_id=plan["os_id"], clock=plan["clock"],
        description=plan["description"],
        cpu_mode="host-passthrough" if plan["virttype"] == "kvm" else "",
    )  # fmt: skip


def looks_like_disk_image(head: bytes) -> str:
    """What the first bytes of a volume say it is: "" for a disk image, else why it is not one."""
    if head[:4] == b"QFI\xfb":
        return ""  # qcow2
    if len(head) >= 0x8006 and head[0x8001:0x8006] == b"CD001":
        return "it is an ISO 9660 image (a CD), not a disk image"
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        return ""  # a partition table (MBR or protective MBR of GPT) or a boot sector
    if head[512:520] == b"EFI PART":
        return ""
    if head[:4] in (b"KDMV", b"conectix"[:4]) or head[:8] == b"vhdxfile" or head[64:68] == b"\x7f\x10\xda\xbe":
        return ""  # vmdk, vpc, vhdx, vdi
    if not head.strip(b"\x00"):
        return "it is empty (only zeros at its start): no partition table, boot sector or disk image header"
    return "it has no disk image header, partition table or boot sector"


def _read_head(conn, pool: str, name: str) -> bytes:
    out = bytearray()
    for hole, piece in vs.download(conn, pool, name, holes=True):
        out += bytes(piece) if not hole else b"\x00" * min(int(piece), IMAGE_MAGIC_READ)  # type: ignore[arg-type]
        if len(out) >= IMAGE_MAGIC_READ:
            break
    return bytes(out[:IMAGE_MAGIC_READ])


def _create(ctx: JobContext) -> Outcome:
    plan = ctx.params["plan"]
    conn, uuid, name = ctx.conn, plan["uuid"], plan["name"]
    if plan["check_image"]:
        ctx.progress(3, "checking the disk image", record=True)
        image = plan["check_image"]
        try:
            why = looks_like_disk_image(_read_head(conn, image["pool"], image["volume"]))
        except NotFound:
            raise JobFailed(
                f"the image {image['volume']} is gone from pool {image['pool']}", code="image_gone"
            ) from None
        except OperationUnsupported:  # a driver without volume downloads (test): libvirt's format is all we know
            why = ""
        if why:
            raise JobFailed(f"{image['volume']} cannot be the VM's disk: {why}", code="not_disk_image")
    if name in vb.domain_names(conn):
        raise JobFailed(f"the host already has a domain named {name}", code="name_taken")
    made: list[dict] = []
    steps = len(plan["volumes"]) + 3
    for i, vol in enumerate(plan["volumes"]):
        ctx.progress(5 + 60 * i // steps, f"creating volume {vol['name']} in {vol['pool']}", record=True)
        made.append({"pool": vol["pool"], "name": vol["name"]})
        ctx.note(volumes=made)
        if vol["role"] == "seed":
            _make_seed(ctx, plan, vol)
        else:
            xml = vs.volume_xml(name=vol["name"], capacity=vol["capacity"], format=vol["format"],
                                backing_path=vol["backing_path"], backing_format=vol["backing_format"])  # fmt: skip
            try:
                vs.volume_create(conn, vol["pool"], xml)
            except VirtError:
                made.pop()  # not ours (it exists already) or not made at all
                ctx.note(volumes=made)
                raise
    ctx.progress(70, "defining the VM", record=True)
    ctx.note(volumes=made, defining=True)
    try:
        vb.domain_define(conn, vb.domain_xml(_spec(plan, vb.new_vnc_password() if plan["graphics"] else "")))
    except VirtError as exc:
        raise JobFailed(f"libvirt refused the VM's definition: {plain_refusal(exc.message)}", code="define") from None
    ctx.note(volumes=made, defined=True)
    done = [f"{plan['vcpus']} vCPU(s), {plan['memory_mib']} MiB", f"{plan['os_name']}"]
    if plan["autostart"]:
        conn.set_autostart(uuid, True)
        done.append("starts with its host")
    if plan["start"]:
        ctx.progress(85, "starting it", record=True)
        try:
            conn.start(uuid)
        except VirtError as exc:
            raise JobFailed(
                f"the VM was defined but did not start: {plain_refusal(exc.message)}", code="start"
            ) from None
        done.append("started")
    for vol in made:
        done.append(f"volume {vol['name']}")
    notes = "; ".join(plan["notes"])
    return Outcome(f"created {name}: " + ", ".join(done) + (f" (note: {notes})" if notes else ""),
                   {"uuid": uuid, "volumes": made, "defined": True})  # fmt: skip


def _make_seed(ctx: JobContext, plan: dict, vol: dict) -> None:
    ci = plan["cloud_init"]
    iso = vseed.nocloud_iso(vseed.CloudInit(hostname=ci["hostname"], user=ci["user"], password_hash=ci["password_hash"],
                                            ssh_keys=tuple(ci["ssh_keys"]), user_data=ci["user_data"],
                                            network_config=ci["network_config"], instance_id=ci["instance_id"]))  # fmt: skip
    vs.volume_create(ctx.conn, vol["pool"], vs.volume_xml(name=vol["name"], capacity=len(iso), format="raw"))
    upload = vs.Upload(ctx.conn, vol["pool"], vol["name"], length=len(iso))
    try:
        upload.write(iso)
        upload.finish()
    except VirtError:
        upload.abort()
        raise


def _undo_create(job) -> str:
    facts = job.result or {}
    if job.host is None or not (facts.get("volumes") or facts.get("defining") or facts.get("defined")):
        return ""
    conn = host_connection(job.host)
    plan = job.params["plan"]
    said = []
    if facts.get("defined") or facts.get("defining"):
        removed = vb.domain_remove(conn, plan["uuid"])
        if removed:
            said.append(" and ".join(removed))
    deleted, kept = [], []
    for vol in facts.get("volumes") or ():
        try:
            vs.volume_delete(conn, vol["pool"], vol["name"])
            deleted.append(vol["name"])
        except NotFound:
            pass
        except VirtError as exc:
            kept.append(f"{vol['name']} ({exc.message})")
    if deleted:
        said.append(f"deleted the volume(s) it had made: {', '.join(deleted)}")
    if kept:
        said.append(f"could not delete {', '.join(kept)}")
    for pool in {v["pool"] for v in facts.get("volumes") or ()}:
        try:
            pool_reread(host=job.host, name=pool, conn=conn)
        except VirtError:
            pass
    return ("undone: " + "; ".join(said)) if said else ""


def _judge_create(job) -> Verdict:
    plan = job.params["plan"]
    if job.host is None:
        return Verdict(False, "its host was removed from Virtfleet")
    try:
        status = host_connection(job.host).domain_status(plan["uuid"])
    except DomainNotFound:
        return Verdict(False, "the VM was not made")
    except VirtError:
        return Verdict(False, "its host does not answer")
    if plan["start"] and str(status.state) != "running":
        return Verdict(False, f"the VM exists but is {status.state}")
    return Verdict(True, "the VM exists" + (" and runs" if plan["start"] else ""))


def _after_create(job) -> None:
    """The new VM's row now, and the job linked to it (its history starts with its creation)."""
    if job.host is None:
        return
    plan = job.params["plan"]
    vm_reread(host=job.host, uuid=plan["uuid"])
    for pool in {v["pool"] for v in plan["volumes"]}:
        try:
            pool_reread(host=job.host, name=pool, conn=host_connection(job.host))
        except VirtError:
            pass
    vm = VM.objects.filter(uuid=plan["uuid"]).first()
    if vm is not None:
        type(job).objects.filter(pk=job.pk).update(vm=vm, vm_uuid=vm.uuid, vm_name=vm.name)


# --- from XML ------------------------------------------------------------------------------------------------
def _check_define(vm: VM, params: dict, **_) -> str:
    host = vm.host
    if host.state != "connected":
        return f"its host {host.name} is {host.get_state_display().lower()}"
    if VM.objects.present().filter(host=host, name=vm.name).exists():
        return f"{host.name} already has a VM named {vm.name}"
    other = VM.objects.present().filter(uuid=vm.uuid).select_related("host").first()
    if other is not None:
        return f"the XML's UUID is that of {other.name} on {other.host.name}"
    return ""


def _define_facts(vm: VM, params: dict) -> dict:
    return {"uuid": str(vm.uuid), "name": vm.name}


def _define(ctx: JobContext) -> Outcome:
    p = ctx.params
    xml = vb.with_uuid(p["xml"], p["uuid"])
    if p["name"] in vb.domain_names(ctx.conn):
        raise JobFailed(f"the host already has a domain named {p['name']}", code="name_taken")
    ctx.progress(20, "validating and creating" if p["transient"] else "validating and defining", record=True)
    ctx.note(defining=True)
    try:
        if p["transient"]:
            vb.domain_create(ctx.conn, xml)
            return Outcome(f"created and started {p['name']} (transient: it is gone once it stops)", {"defined": True})
        vb.domain_define(ctx.conn, xml)
    except VirtError as exc:
        raise JobFailed(f"libvirt refused the XML: {plain_refusal(exc.message)}", code="invalid_xml") from None
    ctx.note(defined=True)
    done = ["defined"]
    if p["autostart"]:
        ctx.conn.set_autostart(p["uuid"], True)
        done.append("starts with its host")
    if p["start"]:
        ctx.progress(60, "starting it", record=True)
        try:
            ctx.conn.start(p["uuid"])
        except VirtError as exc:
            raise JobFailed(f"defined, but it did not start: {plain_refusal(exc.message)}", code="start") from None
        done.append("started")
    return Outcome(f"{p['name']} " + ", ".join(done), {"defined": True})


def _undo_define(job) -> str:
    facts = job.result or {}
    if job.host is None or not (facts.get("defined") or facts.get("defining")):
        return ""
    removed = vb.domain_remove(host_connection(job.host), job.params["uuid"])
    return ("undone: " + " and ".join(removed)) if removed else ""


def _after_define(job) -> None:
    if job.host is None:
        return
    vm_reread(host=job.host, uuid=job.params["uuid"])
    vm = VM.objects.filter(uuid=job.params["uuid"]).first()
    if vm is not None:
        type(job).objects.filter(pk=job.pk).update(vm=vm, vm_uuid=vm.uuid, vm_name=vm.name)


_PLAIN = [
    ("failed to validate against schema", "it does not follow libvirt's domain schema"),
    ("Cannot check QEMU binary", "the emulator it names does not exist on the host"),
    ("No such file or directory", "a file it names does not exist on the host"),
    ("already exists with uuid", "a VM with that name or UUID already exists on the host"),
    ("unsupported configuration", "the host cannot run this configuration"),
    ("Network not found", "a network it names does not exist on the host"),
    ("Storage pool not found", "a pool it names does not exist on the host"),
    ("Storage volume not found", "a volume it names does not exist on the host"),
    ("Requested operation is not valid: network", "a network it uses is not running"),
]


def plain_refusal(message: str) -> str:
    """libvirt's message, led by what it means in plain words when we know."""
    for needle, words in _PLAIN:
        if needle.lower() in message.lower():
            return f"{words} — libvirt says: {message}"
    return message


# --- changes of an existing VM -------------------------------------------------------------------------------
def host_refusal(vm: VM) -> str:
    """Why nothing can change ``vm`` now because of where it is ("" when its host answers)."""
    if vm.host is None or vm.host.state != "connected":
        return "its host is not connected"
    if vm.gone_at is not None:
        return "it no longer exists"
    return ""


def _check_persistent(vm: VM, params: dict, **_) -> str:
    return host_refusal(vm) or ("" if vm.persistent else "the VM is transient: it has no definition to change")


def _check_any(vm: VM, params: dict, **_) -> str:
    return host_refusal(vm)


def after_change(job) -> None:
    """The VM as libvirt has it now, and what is pending until its next boot."""
    if job.host is None or not job.vm_uuid:
        return
    uuid = str(job.vm_uuid)
    vm_reread(host=job.host, uuid=uuid)
    try:
        pending = hw.pending_of(host_connection(job.host), uuid)
    except VirtError:
        return
    vm = VM.objects.filter(uuid=uuid).first()
    if vm is not None and vm.pending != pending:
        VM.objects.filter(pk=vm.pk).update(pending=pending, version=vm.version + 1)
        vm.refresh_from_db()
        vm_changed(vm)


def _edit_xml(ctx: JobContext) -> Outcome:
    current = hw.config_xml(ctx.conn, ctx.uuid, secure=True)
    try:
        xml = hw.restore_secrets(ctx.params["xml"], current)
        hw.redefine(ctx.conn, ctx.uuid, xml)
    except VirtError as exc:
        raise JobFailed(f"libvirt refused the XML: {plain_refusal(exc.message)}", code="invalid_xml") from None
    except Exception as exc:  # not XML at all (the page checks it first; the API may not)
        raise JobFailed(f"the XML is not well-formed: {exc}", code="invalid_xml") from None
    running = ctx.conn.power_state(ctx.uuid)[0] != "shutoff"
    return Outcome("definition saved" + (": it takes effect at the next boot" if running else ""))


def _applied(what: str, applied: hw.Applied) -> Outcome:
    return Outcome(f"{what}: {applied.words}", {"live": applied.live, "config": applied.config})


def _vcpus(ctx: JobContext) -> Outcome:
    n = ctx.params["vcpus"]
    return _applied(f"{n} vCPU(s)", hw.set_vcpus(ctx.conn, ctx.uuid, n))


def _memory(ctx: JobContext) -> Outcome:
    mib = ctx.params["memory_mib"]
    return _applied(f"{mib} MiB of memory", hw.set_memory(ctx.conn, ctx.uuid, mib))


def _volume_of(vm: VM, pk) -> Volume | None:
    return Volume.objects.select_related("pool").filter(pk=pk, pool__host_id=vm.host_id).first()


def _check_disk_attach(vm: VM, params: dict, **_) -> str:
    why = host_refusal(vm)
    if why:
        return why
    if params["volume"]:
        volume = _volume_of(vm, params["volume"])
        if volume is None:
            return "choose a volume of the VM's host"
        users = [u.name for u in vms_using(volume=volume)]
        if users and params["device"] == "disk":
            return f"{volume.name} is the disk of {', '.join(users[:5])}; two VMs on one disk corrupt it"
    else:
        pool = StoragePool.objects.filter(pk=params["pool"], host_id=vm.host_id).first()
        if pool is None or not pool.is_active:
            return "choose a running pool of the VM's host"
        if params["format"] == "raw" and params["size"] > pool.available:
            return f"it needs {human(params['size'])} and pool {pool.name} has {human(pool.available)} free"
    if vm.state in ("running", "paused") and params["live"]:
        return hw.hotplug_refusal(vm.xml, device="disk", bus=params["bus"]) if vm.xml else ""
    return ""


def _disk_attach_facts(vm: VM, params: dict) -> dict:
    if params["volume"]:
        volume = _volume_of(vm, params["volume"])
        assert volume is not None
        return {"pool_name": volume.pool.name, "volume_name": volume.name,
                "format": volume.format if volume.format in ("qcow2", "raw") else "raw", "new": False}  # fmt: skip
    pool = StoragePool.objects.get(pk=params["pool"])
    taken = {v.name for v in Volume.objects.filter(pool=pool)}
    base = f"{vm.name}-disk"
    n = 1
    while f"{base}{n}.{params['format']}" in taken:
        n += 1
    return {"pool_name": pool.name, "volume_name": f"{base}{n}.{params['format']}", "new": True}


def _disk_attach(ctx: JobContext) -> Outcome:
    p = ctx.params
    if p["new"]:
        ctx.progress(20, f"creating volume {p['volume_name']}", record=True)
        ctx.note(created={"pool": p["pool_name"], "name": p["volume_name"]})
        vs.volume_create(ctx.conn, p["pool_name"], vs.volume_xml(name=p["volume_name"], capacity=p["size"],
                                                                  format=p["format"]))  # fmt: skip
    ctx.progress(60, "attaching it", record=True)
    disk = vb.DiskSpec(device=p["device"], bus=p["bus"], pool=p["pool_name"], volume=p["volume_name"],
                       format=p.get("format") or "raw", readonly=p["device"] == "cdrom")  # fmt: skip
    applied, target = hw.disk_attach(ctx.conn, ctx.uuid, disk, live=p["live"])
    ctx.note(attached=target)
    return _applied(f"disk {target} ({p['volume_name']})", applied)


def _undo_disk_attach(job) -> str:
    facts = job.result or {}
    made = facts.get("created")
    if not made or facts.get("attached") or job.host is None:
        return ""
    try:
        vs.volume_delete(host_connection(job.host), made["pool"], made["name"])
    except NotFound:
        return ""
    return f"undone: deleted the volume {made['name']} it had made"


def _after_disk(job) -> None:
    after_change(job)
    pool = job.params.get("pool_name")
    if job.host is not None and pool:
        pool_reread(host=job.host, name=pool, conn=host_connection(job.host))


def _disk_of(vm: VM, target: str) -> dict | None:
    return next((d for d in vm.disks or () if d.get("target") == target), None)


def _check_disk_detach(vm: VM, params: dict, **_) -> str:
    why = host_refusal(vm)
    if why:
        return why
    disk = _disk_of(vm, params["target"])
    if disk is None:
        return f"{vm.name} has no disk {params['target']}"
    if vm.state in ("running", "paused") and disk.get("bus") not in vb.HOTPLUG_BUSES and disk.get("device") == "disk":
        return f"a {disk.get('bus', '').upper()} disk cannot be unplugged from a running VM; shut it down first"
    return ""


def _disk_detach_facts(vm: VM, params: dict) -> dict:
    disk = _disk_of(vm, params["target"]) or {}
    return {"disk": {k: disk.get(k, "") for k in ("pool", "volume", "path", "device")}}


def _disk_detach(ctx: JobContext) -> Outcome:
    p = ctx.params
    applied = hw.disk_detach(ctx.conn, ctx.uuid, p["target"])
    words = f"disk {p['target']} detached: {applied.words}"
    if p["delete_volume"] and p["disk"]["device"] == "disk":
        if applied.live is False and ctx.conn.power_state(ctx.uuid)[0] != "shutoff":
            return Outcome(words + "; its volume is kept while the running VM still holds it")
        disk = p["disk"]
        try:
            if disk["volume"]:
                vs.volume_delete(ctx.conn, disk["pool"], disk["volume"])
                words += f"; volume {disk['volume']} deleted"
        except NotFound:
            pass
    return Outcome(words, {"live": applied.live})


def _nic_facts(vm: VM, params: dict) -> dict:
    return {"mac": params.get("mac") or vb.new_mac()}


def _check_nic_attach(vm: VM, params: dict, **_) -> str:
    why = host_refusal(vm)
    if why:
        return why
    if params["network"]:
        network = Network.objects.filter(host_id=vm.host_id, name=params["network"]).first()
        if network is None:
            return f"{vm.host.name} has no network named {params['network']}"
        if vm.state in ("running", "paused") and params["live"] and not network.active:
            return f"network {network.name} is stopped; start it first"
    if params.get("mac") and any(n.get("mac") == params["mac"] for n in vm.interfaces or ()):
        return f"{vm.name} already has a NIC with MAC {params['mac']}"
    if vm.state in ("running", "paused") and params["live"] and vm.xml:
        return hw.hotplug_refusal(vm.xml, device="nic")
    return ""


def _nic_attach(ctx: JobContext) -> Outcome:
    p = ctx.params
    nic = vb.NicSpec(type="network" if p["network"] else "bridge", source=p["network"] or p["bridge"],
                     model=p["model"] or "virtio", mac=p["mac"])  # fmt: skip
    applied, mac = hw.nic_attach(ctx.conn, ctx.uuid, nic, live=p["live"])
    return _applied(f"NIC {mac} on {nic.source}", applied)


def _check_nic_detach(vm: VM, params: dict, **_) -> str:
    why = host_refusal(vm)
    if why:
        return why
    if not any(n.get("mac") == params["mac"] for n in vm.interfaces or ()):
        return f"{vm.name} has no NIC with MAC {params['mac']}"
    return ""


def _nic_detach(ctx: JobContext) -> Outcome:
    return _applied(f"NIC {ctx.params['mac']} removed", hw.nic_detach(ctx.conn, ctx.uuid, ctx.params["mac"]))


def _check_media(vm: VM, params: dict, **_) -> str:
    why = host_refusal(vm)
    if why:
        return why
    disk = _disk_of(vm, params["target"])
    if disk is None or disk.get("device") not in ("cdrom", "floppy"):
        return f"{vm.name} has no CD-ROM {params['target']}"
    if params["volume"]:
        volume = _volume_of(vm, params["volume"])
        if volume is None:
            return "choose an ISO volume of the VM's host"
    return ""


def _media_facts(vm: VM, params: dict) -> dict:
    volume = _volume_of(vm, params["volume"]) if params["volume"] else None
    return {"pool_name": volume.pool.name if volume else "", "volume_name": volume.name if volume else ""}


def _media(ctx: JobContext) -> Outcome:
    p = ctx.params
    applied = hw.media_change(ctx.conn, ctx.uuid, p["target"], pool=p["pool_name"], volume=p["volume_name"])
    what = f"{p['volume_name']} inserted in {p['target']}" if p["volume_name"] else f"{p['target']} ejected"
    return _applied(what, applied)


def _boot_order(ctx: JobContext) -> Outcome:
    applied = hw.set_boot_order(ctx.conn, ctx.uuid, ctx.params["order"])
    return _applied("boots from " + ", then ".join(ctx.params["order"]), applied)


def _check_rename(vm: VM, params: dict, **_) -> str:
    why = _check_persistent(vm, params)
    if why:
        return why
    if vm.state != "shutoff":
        return "a running VM cannot be renamed; shut it down first"
    if params["name"] == vm.name:
        return f"it is called {vm.name} already"
    if VM.objects.present().filter(host_id=vm.host_id, name=params["name"]).exclude(pk=vm.pk).exists():
        return f"{vm.host.name} already has a VM named {params['name']}"
    return ""


def _rename(ctx: JobContext) -> Outcome:
    hw.rename(ctx.conn, ctx.uuid, ctx.params["name"])
    return Outcome(f"renamed to {ctx.params['name']}")


def _describe(ctx: JobContext) -> Outcome:
    applied = hw.set_description(ctx.conn, ctx.uuid, description=ctx.params["description"], title=ctx.params["title"])
    return _applied("description saved", applied)


def _change(name: str, label: str, handler, check, params, **extra) -> Kind:
    extra.setdefault("after", after_change)
    return Kind(name=name, label=label, handler=handler, subject=vm_subject, lock="vm", queue=QUEUE,
                right="configure", audit_action=name, check=check, params=params, **extra)  # fmt: skip


for _kind_ in [
    Kind(name="vm.create", label="Create VM", handler=_create, subject=new_vm_subject, lock="vmname", queue=QUEUE,
         right="configure", audit_action="vm.create", params=P.CreateParams, check=_check_create,
         facts=_create_facts, undo=_undo_create, judge=_judge_create, after=_after_create,
         retry_transient=False, secret_params=CREATE_SECRETS,
         options_template="provisioning/_create_plan.html"),
    Kind(name="vm.define_xml", label="Define VM from XML", handler=_define, subject=new_vm_subject, lock="vmname",
         queue=QUEUE, right="configure", audit_action="vm.define_xml", params=P.DefineXmlParams,
         check=_check_define, facts=_define_facts, undo=_undo_define, after=_after_define, retry_transient=False,
         secret_params=("xml",)),
    _change("vm.edit_xml", "Edit XML", _edit_xml, _check_persistent, P.EditXmlParams, secret_params=("xml",)),
    _change("vm.set_vcpus", "Change vCPUs", _vcpus, _check_any, P.VcpusParams),
    _change("vm.set_memory", "Change memory", _memory, _check_any, P.MemoryParams),
    _change("vm.disk_attach", "Add disk", _disk_attach, _check_disk_attach, P.DiskAttachParams,
            facts=_disk_attach_facts, undo=_undo_disk_attach, after=_after_disk),
    _change("vm.disk_detach", "Remove disk", _disk_detach, _check_disk_detach, P.DiskDetachParams,
            facts=_disk_detach_facts, after=_after_disk),
    _change("vm.nic_attach", "Add NIC", _nic_attach, _check_nic_attach, P.NicAttachParams, facts=_nic_facts),
    _change("vm.nic_detach", "Remove NIC", _nic_detach, _check_nic_detach, P.NicDetachParams),
    _change("vm.media", "Change CD-ROM media", _media, _check_media, P.MediaParams, facts=_media_facts),
    _change("vm.boot_order", "Change boot order", _boot_order, _check_persistent, P.BootOrderParams),
    _change("vm.rename", "Rename VM", _rename, _check_rename, P.RenameParams),
    _change("vm.describe", "Change description", _describe, _check_any, P.DescribeParams),
]:  # fmt: skip
    kinds.register(_kind_)
