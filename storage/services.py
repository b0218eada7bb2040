"""Storage services: every operation on pools and volumes becomes a job (storage.kinds); uploads and
downloads also open their transfer (storage.transfers) and hand its token to who asked."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import serializers

from core import access
from core.errors import Forbidden, ServiceError
from jobs.engine import job_request
from jobs.models import Job

from . import transfers
from .models import StoragePool, Volume
from .params import check_name

POOL_ACTIONS = {
    "build": "pool.build", "start": "pool.start", "stop": "pool.stop", "refresh": "pool.refresh",
    "autostart_on": "pool.autostart_on", "autostart_off": "pool.autostart_off", "undefine": "pool.undefine",
    "delete": "pool.delete",
}  # fmt: skip
VOLUME_ACTIONS = {"resize": "volume.resize", "wipe": "volume.wipe", "delete": "volume.delete", "clone": "volume.clone"}


def _name(name: str, what: str) -> str:
    try:
        return check_name(name, what)
    except serializers.ValidationError as exc:
        raise ServiceError(str(exc.detail[0]), field="name") from None


def pool_define_request(*, host, name: str, params: dict, user=None, ip=None) -> Job:
    """Define a new pool on ``host`` (and build, start, autostart it as asked): a job."""
    pool = StoragePool(host=host, name=_name(name, "pool"))
    return job_request(kind="pool.define", target=pool, params=params, user=user, ip=ip)


def pool_job_request(*, pool: StoragePool, action: str, user=None, ip=None) -> Job:
    if action not in POOL_ACTIONS:
        raise ServiceError(f"Unknown pool action {str(action)[:40]!r}; use one of: {', '.join(POOL_ACTIONS)}.",
                           field="action")  # fmt: skip
    return job_request(kind=POOL_ACTIONS[action], target=pool, user=user, ip=ip)


def volume_create_request(*, pool: StoragePool, name: str, params: dict, user=None, ip=None) -> Job:
    volume = Volume(pool=pool, name=_name(name, "volume"))
    return job_request(kind="volume.create", target=volume, params=params, user=user, ip=ip)


def volume_job_request(*, volume: Volume, action: str, params: dict | None = None, user=None, ip=None) -> Job:
    if action not in VOLUME_ACTIONS:
        raise ServiceError(f"Unknown volume action {str(action)[:40]!r}; use one of: {', '.join(VOLUME_ACTIONS)}.",
                           field="action")  # fmt: skip
    forced = action == "delete" and (params or {}).get("force") not in (None, False, "", "0", "false", "off")
    if forced and not access.may(user, access.ADMINISTER):  # deleting a volume VMs use: administrators only
        access.record_refusal(user=user, action="volume.delete", target=volume,
                              message="only administrators may delete a volume VMs use")  # fmt: skip
        raise Forbidden("Only administrators may delete a volume that VMs use.")
    return job_request(kind=VOLUME_ACTIONS[action], target=volume, params=params, user=user, ip=ip)


def volume_copy_request(*, volume: Volume, target_pool: StoragePool, name: str = "", bandwidth: int = 0, user=None,
                        ip=None) -> Job:  # fmt: skip
    """Copy ``volume`` into ``target_pool`` (on another host, or this one), streamed by a worker;
    ``bandwidth``: at most so many MiB/s."""
    access.require(user, access.MANAGE, target_pool, what="volume.copy")
    return job_request(kind="volume.copy", target=volume,
                       params={"target_pool": target_pool.pk, "name": name, "bandwidth": bandwidth or 0},
                       user=user, ip=ip, target_host=target_pool.host)  # fmt: skip


@dataclass(frozen=True)
class Transfer:
    """What the browser gets to send or fetch a volume's bytes: the job, its URL, its token (once)."""

    job: Job
    url: str
    token: str
    offset: int = 0
    chunk_size: int = transfers.CHUNK


def upload_request(*, pool: StoragePool, name: str, params: dict, user=None, ip=None) -> Transfer:
    """Start an upload into ``pool``: a job that waits for the browser's chunks (a new volume of the
    file's size, or an existing one to overwrite)."""
    name = _name(name, "volume")
    existing = Volume.objects.filter(pool=pool, name=name).first()
    volume = existing or Volume(pool=pool, name=name)
    job = job_request(kind="volume.upload", target=volume, params=params, user=user, ip=ip)
    token = transfers.open_transfer(job.pk)
    return Transfer(job=job, url=f"/api/transfers/{job.pk}/", token=token)


def download_request(*, volume: Volume, user=None, ip=None) -> Transfer:
    job = job_request(kind="volume.download", target=volume, params={}, user=user, ip=ip)
    token = transfers.open_transfer(job.pk)
    return Transfer(job=job, url=f"/api/transfers/{job.pk}/?token={token}", token=token)


def transfer_resume(*, job: Job, user) -> Transfer:
    """A new token for an upload the same user left (a reloaded page): the next chunk goes at the
    offset accepted so far."""
    if job.kind != "volume.upload" or not job.is_active:
        raise ServiceError("Only an upload that is still running can be resumed.")
    if user is None or job.requested_by_id != getattr(user, "pk", None):
        raise Forbidden("Only who started an upload can resume it.")
    token = transfers.new_token(job.pk)
    return Transfer(job=job, url=f"/api/transfers/{job.pk}/", token=token, offset=transfers.accepted_now(job.pk))
