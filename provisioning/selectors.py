"""What the New VM form and the hardware page offer, read from the database only: the host's
capabilities (machine types, firmware, disk buses), its running pools, its ISOs and disk images,
its networks, the OS presets, the user's SSH keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q

from core.errors import NotFound
from hosts.models import Host
from networks.models import Network
from storage.models import StoragePool, Volume
from virt import osinfo
from vms.models import VM

from .models import HostCapabilities, SSHKey
from .planner import is_iso


@dataclass
class CreateOptions:
    host: Host | None
    hosts: list[Host]
    reported: bool = False
    virttypes: list[str] = field(default_factory=list)
    machines: list[str] = field(default_factory=list)
    firmware: list[str] = field(default_factory=lambda: ["bios"])
    secure_boot: bool = False
    disk_buses: list[str] = field(default_factory=lambda: ["virtio", "sata", "scsi", "ide"])
    max_vcpus: int = 0
    pools: list[StoragePool] = field(default_factory=list)
    isos: list[Volume] = field(default_factory=list)
    images: list[Volume] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)
    presets: list[osinfo.OsPreset] = field(default_factory=list)
    generic: osinfo.OsPreset | None = None
    keys: list[SSHKey] = field(default_factory=list)
    osinfo_error: str = ""


def create_options(*, host: Host | None, hosts: list[Host], user=None) -> CreateOptions:
    opts = CreateOptions(host=host, hosts=hosts)
    try:
        db = osinfo.database()
        opts.presets = db.presets()
        opts.generic = db.generic()
    except Exception as exc:  # osinfo-db missing: the form still works with the generic defaults
        opts.osinfo_error = str(exc)
    if user is not None and getattr(user, "is_authenticated", False):
        opts.keys = list(SSHKey.objects.filter(user=user))
    if host is None:
        return opts
    row = HostCapabilities.objects.filter(host=host).first()
    if row is not None:
        caps = row.caps
        arch = host.arch or "x86_64"
        opts.reported = caps.reported
        opts.virttypes = caps.virttypes(arch)
        opts.machines = caps.machines(arch)
        dom = caps.domain(arch=arch, machine="q35" if "q35" in opts.machines else "", virttype="")
        if dom is not None:
            opts.firmware = list(dom.firmware) or ["bios"]
            opts.secure_boot = dom.secure_boot
            opts.disk_buses = [
                b for b in ("virtio", "scsi", "sata", "ide", "usb") if b in dom.disk_buses
            ] or opts.disk_buses
            opts.max_vcpus = dom.max_vcpus
    opts.pools = list(StoragePool.objects.filter(host=host, state="active").order_by("name"))
    volumes = list(Volume.objects.filter(pool__host=host, pool__state="active").select_related("pool")
                   .order_by("pool__name", "name"))  # fmt: skip
    disks = [d for vm in VM.objects.present().filter(host=host).only("disks") for d in vm.disks or ()
             if d.get("device") == "disk"]  # fmt: skip
    in_use = {(d.get("pool"), d.get("volume")) for d in disks if d.get("volume")} | {d.get("path") for d in disks}
    opts.isos = [v for v in volumes if is_iso(v)]
    opts.images = [v for v in volumes if not is_iso(v) and (v.pool.name, v.name) not in in_use and v.path not in in_use]
    opts.networks = list(Network.objects.filter(host=host).order_by("-active", "name"))
    return opts


def ssh_key_get(*, user, key_id: int) -> SSHKey:
    key = SSHKey.objects.filter(user=user, pk=key_id).first()
    if key is None:
        raise NotFound("No such SSH key.")
    return key


# --- templates ------------------------------------------------------------------------------------------------
_OS_ID = __import__("re").compile(r"<libosinfo:os id=[\"']([^\"']+)[\"']")


@dataclass
class TemplateRow:
    """A template as the Templates page and GET /api/templates/ show it."""

    vm: VM
    os: str
    disks: list[dict]  # {"target", "volume", "format", "capacity", "allocation"}
    size: int  # bytes its disks hold (allocation)
    capacity: int  # bytes the guest sees
    copies: list[str]  # hosts that have a copy of its disks for its current generation
    generation: str


def _os_name(xml: str) -> str:
    found = _OS_ID.search(xml or "")
    if not found:
        return ""
    try:
        preset = osinfo.database().get(found.group(1))
    except Exception:
        preset = None
    return preset.name if preset is not None else found.group(1).rstrip("/").rsplit("/", 2)[-2:][-1]


def template_rows(*, user) -> list[TemplateRow]:
    """The templates ``user`` may see, with their disks and the hosts holding copies (a fixed
    number of queries, whatever the number of templates)."""
    from core import access
    from virt.clone import clone_plan
    from virt.template import template_generation

    from .models import TemplateImage

    vms = list(access.visible_vms(user, VM.objects.present().filter(template=True)).select_related("host")
               .order_by("name"))  # fmt: skip
    plans = {vm.pk: [c.disk for c in clone_plan(vm.xml or "<domain/>") if c.action == "copy"] for vm in vms}
    names = {d.volume for ds in plans.values() for d in ds if d.volume}
    paths = {d.path for ds in plans.values() for d in ds if d.path}
    volumes = list(Volume.objects.filter(pool__host_id__in={vm.host_id for vm in vms})
                   .filter(Q(name__in=names) | Q(path__in=paths)).select_related("pool"))  # fmt: skip
    images: dict[int, set[str]] = {}
    generations = {vm.pk: template_generation(vm.xml) for vm in vms}
    for image in TemplateImage.objects.filter(template__in=vms, complete=True).select_related("host"):
        if image.generation == generations.get(image.template_id):
            images.setdefault(image.template_id, set()).add(image.host.name)
    rows = []
    for vm in vms:
        disks = []
        for d in plans[vm.pk]:
            vol = next((v for v in volumes if v.pool.host_id == vm.host_id and (
                (d.volume and v.pool.name == d.pool and v.name == d.volume) or (d.path and v.path == d.path))), None)  # fmt: skip
            disks.append({"target": d.target, "volume": vol.name if vol else d.label, "format": vol.format if vol else d.format,
                          "capacity": vol.capacity if vol else 0, "allocation": vol.allocation if vol else 0})  # fmt: skip
        rows.append(TemplateRow(vm=vm, os=_os_name(vm.xml), disks=disks, size=sum(d["allocation"] for d in disks),
                                capacity=sum(d["capacity"] for d in disks), copies=sorted(images.get(vm.pk, ())),
                                generation=generations[vm.pk]))  # fmt: skip
    return rows
