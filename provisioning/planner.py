"""A new VM's plan: the user's choices completed with the OS preset's (osinfo-db) and checked against
what the host can run (its domain capabilities), its pools, volumes and networks — before anything
is made. ``plan_vm`` raises ``Refusal`` with the reason in plain words; the job only executes the
plan it was given (kept in Job.params), so a worker needs no database to know what to make."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.conf import settings

from hosts.models import Host
from networks.models import Network
from storage.models import StoragePool, Volume
from storage.params import human
from storage.selectors import vms_using
from virt import osinfo
from vms.models import VM

from .models import HostCapabilities

DEFAULT_DISK = 20 * 2**30  # virt-install's default disk size when the OS says nothing
DEFAULT_MEMORY_MIB = 1024
ISO_FORMATS = ("iso",)
DISK_FORMATS = ("qcow2", "raw", "vmdk", "vdi", "vpc", "vhdx", "qed")


class Refusal(Exception):
    """A plan that cannot be made, and why (in words the user reads)."""

    def __init__(self, reason: str, field: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass
class PlannedVolume:
    """A volume the job creates (and removes again if it fails)."""

    pool: str
    name: str
    capacity: int
    format: str = "qcow2"
    backing_path: str = ""
    backing_format: str = ""
    role: str = "disk"  # disk | seed


@dataclass
class Plan:
    name: str
    uuid: str
    os_id: str
    os_name: str
    virttype: str
    arch: str
    machine: str
    emulator: str
    firmware: str
    secure_boot: bool
    vcpus: int
    max_vcpus: int
    memory_mib: int
    disk_bus: str
    nic_model: str
    disks: list[dict] = field(default_factory=list)  # virt.builder.DiskSpec fields
    nics: list[dict] = field(default_factory=list)  # virt.builder.NicSpec fields
    volumes: list[dict] = field(default_factory=list)  # PlannedVolume fields, in creation order
    check_image: dict = field(default_factory=dict)  # {"pool", "volume"}: must look like a disk image
    graphics: bool = True
    vnc_listen: str = "127.0.0.1"
    serial: bool = True
    serial_log: str = ""
    usb_tablet: bool = True
    autostart: bool = False
    start: bool = True
    description: str = ""
    clock: str = "utc"
    cloud_init: dict = field(default_factory=dict)  # virt.seed.CloudInit fields (a password only hashed)
    notes: list[str] = field(default_factory=list)  # what the user should know (below the OS minimum...)

    def to_dict(self) -> dict:
        return asdict(self)


def capabilities_of(host: Host):
    row = HostCapabilities.objects.filter(host=host).first()
    return row.caps if row is not None else None


def preset_of(key: str) -> osinfo.OsPreset:
    db = osinfo.database()
    if not key:
        return db.generic()
    preset = db.get(key.strip())
    if preset is None:
        raise Refusal(f"osinfo-db knows no OS {key[:60]!r}; choose one from the list (or leave it empty)", "os")
    return preset


def _virttype(caps, arch: str, wanted: str) -> str:
    offered = caps.virttypes(arch) if caps is not None else []
    if wanted:
        if offered and wanted not in offered:
            raise Refusal(f"the host runs {arch} guests with {', '.join(offered)}, not {wanted}", "virttype")
        return wanted
    return offered[0] if offered else "kvm"


def _machine(caps, arch: str, virttype: str, wanted: str, preferred: str = "q35") -> tuple[str, str]:
    """The machine type (as given, else the OS preset's — q35 for a modern OS — when offered) and the
    emulator that runs it."""
    guest = next((g for g in caps.guests if g.arch == arch and g.os_type == "hvm"), None) if caps else None
    if guest is None or not guest.machines:
        return wanted, ""
    names = {m.name for m in guest.machines} | {m.canonical for m in guest.machines if m.canonical}
    if wanted:
        if wanted not in names:
            raise Refusal(f"the host has no machine type {wanted} for {arch}; it offers q35, pc and versioned ones",
                          "machine")  # fmt: skip
        return wanted, guest.emulator
    for choice in (preferred, "q35", "pc"):
        if choice in names:
            return choice, guest.emulator
    return "", guest.emulator


def _firmware(caps, preset: osinfo.OsPreset, arch: str, machine: str, virttype: str, wanted: str,
              secure: bool) -> tuple[str, bool]:  # fmt: skip
    dom = caps.domain(arch=arch, machine=machine, virttype=virttype) if caps is not None and caps.reported else None
    offered = tuple(dom.firmware) if dom is not None else ("bios",)
    # virt-install's own choice (BIOS unless the OS cannot boot it) when the user leaves it empty
    choice = wanted or (preset.firmware_default if preset.firmware_default in offered else "bios")
    if choice not in offered:
        what = "UEFI firmware" if choice == "efi" else "BIOS firmware"
        raise Refusal(f"the host has no {what} for {machine or 'its'} machines (it offers {', '.join(offered)}); "
                      "install ovmf on it or choose another firmware", "firmware")  # fmt: skip
    if secure and not (dom is not None and dom.secure_boot):
        raise Refusal(f"the host offers no secure boot firmware for {machine} machines", "secure_boot")
    if choice == "efi" and preset.secure_boot and not wanted and dom is not None and dom.secure_boot:
        secure = True  # as virt-install does for an OS that needs it (Windows 11)
    return choice, secure


def _pool(host: Host, pk: int | None, field_name: str) -> StoragePool:
    pool = StoragePool.objects.filter(pk=pk, host=host).first() if pk else None
    if pool is None:
        raise Refusal(f"choose a pool of {host.name}", field_name)
    if not pool.is_active:
        raise Refusal(f"pool {pool.name} is {pool.get_state_display().lower()}; start it first", field_name)
    return pool


def _volume(host: Host, pk: int | None, field_name: str) -> Volume:
    volume = Volume.objects.select_related("pool").filter(pk=pk, pool__host=host).first() if pk else None
    if volume is None:
        raise Refusal(f"choose a volume of {host.name}", field_name)
    if not volume.pool.is_active:
        raise Refusal(f"pool {volume.pool.name} is not running; start it first", field_name)
    return volume


def is_iso(volume: Volume) -> bool:
    """An ISO image by libvirt's format or, where the pool does not tell, its name."""
    return volume.format in ISO_FORMATS or volume.name.lower().endswith(".iso")


def _free_name(pool: StoragePool, name: str, taken: set[str]) -> str:
    if name in taken or Volume.objects.filter(pool=pool, name=name).exists():
        raise Refusal(f"pool {pool.name} already has a volume named {name}; choose another VM name or remove it",
                      "name")  # fmt: skip
    taken.add(name)
    return name


def _nics(host: Host, wanted: list[dict] | None, model: str) -> list[dict]:
    networks = {n.name: n for n in Network.objects.filter(host=host)}
    if wanted is None:
        default = networks.get("default")
        if default is None or not default.active:
            default = next((n for n in sorted(networks.values(), key=lambda n: n.name) if n.active), None)
        return [{"type": "network", "source": default.name, "model": model}] if default is not None else []
    nics = []
    for i, nic in enumerate(wanted):
        if nic.get("network"):
            network = networks.get(nic["network"])
            if network is None:
                raise Refusal(f"{host.name} has no network named {nic['network']}", f"nics.{i}")
            if not network.active:
                raise Refusal(f"network {network.name} is stopped; start it first", f"nics.{i}")
            nics.append({"type": "network", "source": network.name, "model": nic.get("model") or model})
        else:
            nics.append({"type": "bridge", "source": nic["bridge"], "model": nic.get("model") or model})
    return nics


def _vnc_listen(host: Host) -> str:
    """Loopback where the console proxy reaches it anyway (local, ssh tunnel, a host on this machine);
    otherwise all addresses, behind the generated password."""
    from virt.uri import InvalidURI, parse_uri

    try:
        uri = parse_uri(host.uri)
    except InvalidURI:
        return "127.0.0.1"
    address = (uri.host or "").lower()
    if not uri.is_remote or uri.is_ssh or address in ("localhost", "::1", "[::1]") or address.startswith("127."):
        return "127.0.0.1"
    return "0.0.0.0"  # noqa: S104 (the VNC server of a remote guest; the console proxy connects to it)


def _room(pool: StoragePool, needed: int, what: str) -> None:
    if needed > pool.available:
        raise Refusal(f"{what} needs {human(needed)} and pool {pool.name} has {human(pool.available)} free; "
                      "choose a smaller size or another pool", "disk_size")  # fmt: skip


def _source_disks(host: Host, p: dict, plan: Plan, cd_bus: str) -> int:
    """The ISO (CD-ROM, booted first) or the imported disk; the boot order left for a new disk."""
    if p["source"] == "iso":
        iso = _volume(host, p["iso_volume"], "iso_volume")
        if not is_iso(iso):
            raise Refusal(f"{iso.name} is not an ISO image (its format is {iso.format or 'unknown'})", "iso_volume")
        plan.disks.append({"device": "cdrom", "bus": cd_bus, "pool": iso.pool.name, "volume": iso.name,
                           "format": "raw", "readonly": True, "boot_order": 1})  # fmt: skip
        return 2
    if p["source"] == "import":
        image = _volume(host, p["image_volume"], "image_volume")
        if is_iso(image):
            raise Refusal(f"{image.name} is an ISO image, not a disk image; install from it instead", "image_volume")
        users = [vm.name for vm in vms_using(volume=image)]
        if users:
            raise Refusal(f"{image.name} is the disk of {', '.join(users[:5])}; two VMs on one disk corrupt it "
                          "(clone it first)", "image_volume")  # fmt: skip
        if Volume.objects.filter(pool__host=host, backing_path=image.path).exists():
            raise Refusal(f"{image.name} backs other disks (it is their cloud image or base); writing to it would "
                          "corrupt them — copy it first", "image_volume")  # fmt: skip
        plan.disks.append({"device": "disk", "bus": plan.disk_bus, "pool": image.pool.name, "volume": image.name,
                           "format": image.format if image.format in DISK_FORMATS else "raw", "boot_order": 1})  # fmt: skip
        plan.check_image = {"pool": image.pool.name, "volume": image.name}
    return 1


def _disks(host: Host, name: str, p: dict, plan: Plan, preset: osinfo.OsPreset) -> None:
    source, bus = p["source"], plan.disk_bus
    taken: set[str] = set()
    cd_bus = "sata" if "q35" in plan.machine or not plan.machine else "ide"
    order = _source_disks(host, p, plan, cd_bus)
    pool = _pool(host, p["disk_pool"], "disk_pool") if p["disk_pool"] else None
    needed = 0
    if source in ("iso", "none", "cloud"):
        assert pool is not None
        size = p["disk_size"] or preset.recommended_storage_bytes or preset.min_storage_bytes or DEFAULT_DISK
        fmt = p["disk_format"]
        vol = PlannedVolume(pool=pool.name, name=_free_name(pool, f"{name}.{fmt}", taken), capacity=size, format=fmt)
        if source == "cloud":
            image = _volume(host, p["image_volume"], "image_volume")
            if is_iso(image):
                raise Refusal(f"{image.name} is an ISO image, not a cloud disk image", "image_volume")
            if size < image.capacity:
                raise Refusal(f"the disk must be at least the cloud image's {human(image.capacity)}", "disk_size")
            vol = PlannedVolume(pool=pool.name, name=vol.name, capacity=size, format="qcow2",
                                backing_path=image.path, backing_format=image.format if image.format in DISK_FORMATS else "raw")  # fmt: skip
            plan.check_image = {"pool": image.pool.name, "volume": image.name}
        else:
            needed += size if fmt == "raw" else 0
        plan.volumes.append(asdict(vol))
        plan.disks.append({"device": "disk", "bus": bus, "pool": pool.name, "volume": vol.name, "format": vol.format,
                           "boot_order": order})  # fmt: skip
        if source == "none":
            for nic in plan.nics:
                nic["boot_order"] = order + 1  # network boot after the empty disk
    for i, size in enumerate(p["extra_disks"], 1):
        assert pool is not None
        fmt = p["disk_format"]
        vol = PlannedVolume(
            pool=pool.name, name=_free_name(pool, f"{name}-{i}.{fmt}", taken), capacity=size, format=fmt
        )
        plan.volumes.append(asdict(vol))
        plan.disks.append({"device": "disk", "bus": bus, "pool": pool.name, "volume": vol.name, "format": fmt})
        needed += size if fmt == "raw" else 0
    if pool is not None:
        thin = sum(v["capacity"] for v in plan.volumes if v["format"] == "qcow2")
        _room(pool, needed, "the new disks")
        if thin > pool.available:
            plan.notes.append(f"the qcow2 disks may grow to {human(thin)} and pool {pool.name} has "
                              f"{human(pool.available)} free")  # fmt: skip
    if source == "cloud":
        assert pool is not None
        seed = PlannedVolume(pool=pool.name, name=_free_name(pool, f"{name}-seed.iso", taken), capacity=0,
                             format="raw", role="seed")  # fmt: skip
        plan.volumes.append(asdict(seed))
        # The seed on a virtio-scsi CD-ROM: cloud kernels (Debian's cloud, Ubuntu's virtual) have
        # virtio-scsi but often no AHCI, so a SATA CD-ROM would go unseen and cloud-init find no seed.
        seed_bus = "scsi" if plan.virttype != "test" else cd_bus
        plan.disks.append({"device": "cdrom", "bus": seed_bus, "pool": pool.name, "volume": seed.name,
                           "format": "raw", "readonly": True})  # fmt: skip


def plan_vm(*, host: Host, uuid: str, params: dict) -> Plan:
    """The complete plan of a new VM on ``host`` from the checked options (provisioning.params.CreateParams)."""
    p = params
    name = p["name"]
    if host.state != "connected":
        raise Refusal(f"host {host.name} is {host.get_state_display().lower()}", "host")
    if host.maintenance:
        raise Refusal(f"host {host.name} is in maintenance", "host")
    if VM.objects.present().filter(host=host, name=name).exists():
        raise Refusal(f"{host.name} already has a VM named {name}", "name")
    preset = preset_of(p["os"])
    caps = capabilities_of(host)
    arch = host.arch if host.arch in ("x86_64", "i686", "aarch64", "ppc64le", "s390x", "armv7l") else "x86_64"
    virttype = _virttype(caps, arch, p["virttype"])
    machine, emulator = _machine(caps, arch, virttype, p["machine"], preset.machine)
    if machine:
        preset = preset.on_machine(machine)  # IDE does not exist on q35: SATA and e1000e there
    firmware, secure = _firmware(caps, preset, arch, machine, virttype, p["firmware"], p["secure_boot"])
    dom = caps.domain(arch=arch, machine=machine, virttype=virttype) if caps is not None and caps.reported else None
    bus = p["disk_bus"] or preset.disk_bus or "virtio"
    if dom is not None and dom.disk_buses and bus not in dom.disk_buses:
        if p["disk_bus"]:
            raise Refusal(f"the host offers no {bus} disks for {machine} machines", "disk_bus")
        bus = "sata" if "sata" in dom.disk_buses else dom.disk_buses[0]
    memory = p["memory_mib"] or preset.recommended_memory_mib or DEFAULT_MEMORY_MIB
    vcpus = p["vcpus"] or max(1, min(preset.recommended_vcpus or 1, host.cpus or 1, 2))
    max_vcpus = max(vcpus, p["max_vcpus"])
    if dom is not None and dom.max_vcpus and max_vcpus > dom.max_vcpus:
        raise Refusal(f"{machine} machines take at most {dom.max_vcpus} vCPUs", "vcpus")
    if host.cpus and vcpus > host.cpus * 4:
        raise Refusal(f"{vcpus} vCPUs is more than four per CPU of the host ({host.cpus} CPUs)", "vcpus")
    if p["start"] and host.free_memory_bytes and memory * 2**20 > host.free_memory_bytes:
        raise Refusal(f"it needs {human(memory * 2**20)} and {host.name} has {human(host.free_memory_bytes)} free; "
                      "choose less memory, another host, or do not start it", "memory_mib")  # fmt: skip
    plan = Plan(name=name, uuid=uuid, os_id=preset.id, os_name=preset.name, virttype=virttype, arch=arch,
                machine=machine, emulator=emulator, firmware=firmware, secure_boot=secure, vcpus=vcpus,
                max_vcpus=max_vcpus, memory_mib=memory, disk_bus=bus, nic_model=preset.nic_model or "virtio",
                graphics=p["graphics"], vnc_listen=_vnc_listen(host), serial=p["serial"],
                usb_tablet=preset.usb_tablet, autostart=p["autostart"], start=p["start"],
                description=p["description"], clock="localtime" if preset.family == "winnt" else "utc")  # fmt: skip
    if plan.serial and settings.VIRTFLEET.get("SERIAL_LOG", True):
        plan.serial_log = f"/var/log/libvirt/qemu/{name}.serial.log"
    if preset.min_memory_mib and memory < preset.min_memory_mib:
        plan.notes.append(f"{preset.name} needs at least {preset.min_memory_mib} MiB of memory")
    plan.nics = _nics(host, p["nics"], plan.nic_model)
    _disks(host, name, p, plan, preset)
    if p["source"] == "cloud":
        plan.cloud_init = {"hostname": p["ci_hostname"] or name, "user": p["ci_user"],
                           "password_hash": p["ci_password_hash"], "ssh_keys": list(p["ci_ssh_keys"]),
                           "user_data": p["ci_user_data"], "network_config": p["ci_network_config"],
                           "instance_id": f"iid-{uuid}"}  # fmt: skip
    return plan


def _candidates(hosts) -> list[Host]:
    """Connected hosts out of maintenance, with how many VMs each runs (``running``)."""
    from django.db.models import Count, Q

    return list(
        hosts.filter(state="connected", maintenance="").annotate(
            running=Count("vms", filter=Q(vms__gone_at__isnull=True, vms__state="running"))
        )
    )


def spread_hosts(*, count: int, memory_mib: int, hosts, fits=None) -> tuple[list[Host], str]:
    """Where ``count`` new VMs go when the user lets Virtfleet spread them: each, in turn, on the
    host ``best_host`` would choose once the VMs placed before it are counted (their memory taken
    from its free memory, one more running VM); ``fits(host, n)`` says whether a host takes an n-th
    VM (its storage). Returns one host per VM, or [] and why not."""
    candidates = _candidates(hosts)
    if not candidates:
        return [], "no connected host out of maintenance that you may create VMs on"
    placed: dict[int, int] = {h.pk: 0 for h in candidates}
    out: list[Host] = []
    need = memory_mib * 2**20
    for _ in range(count):
        room = [h for h in candidates if (fits is None or fits(h, placed[h.pk] + 1))
                and (not h.free_memory_bytes or h.free_memory_bytes - placed[h.pk] * need >= need)]  # fmt: skip
        if not room:
            return [], (f"the connected hosts have room for {len(out)} of the {count} VMs "
                        f"({memory_mib} MiB of memory each, and their disks)")  # fmt: skip
        room.sort(key=lambda h: (-(h.free_memory_bytes - placed[h.pk] * need), h.running + placed[h.pk], h.name))
        out.append(room[0])
        placed[room[0].pk] += 1
    return out, ", ".join(f"{h.name}: {n}" for h in candidates if (n := placed[h.pk]))


def best_host(*, memory_mib: int, hosts) -> tuple[Host | None, str]:
    """Where a new VM goes when the user lets Virtfleet choose: a connected host out of maintenance
    with the most free memory (ties: fewer running VMs); and why, in words."""
    candidates = _candidates(hosts)
    if not candidates:
        return None, "no connected host out of maintenance that you may create VMs on"
    candidates.sort(key=lambda h: (-h.free_memory_bytes, h.running, h.name))
    best = candidates[0]
    fits = memory_mib * 2**20 <= best.free_memory_bytes if best.free_memory_bytes else True
    why = (f"{best.name}: {human(best.free_memory_bytes)} free of {human(best.memory_bytes)}, "
           f"{best.running} VMs running — the most free memory of {len(candidates)} connected host(s)")  # fmt: skip
    if not fits:
        why += f", but less than the {memory_mib} MiB asked for"
    return best, why
