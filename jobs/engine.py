"""The job engine: asking for a job, moving it through its states, running it on a worker, parents
and children, cancelling, and ending jobs whose worker died — the same for every kind.

Flow: job_request (a service, for a web or API request) checks the right, the options and the
lock, asks the kind whether its target can take it, creates the Job row and has the dispatcher send
``jobs.run`` once the transaction commits → job_run (on a worker) claims it (after the kind's
admission, e.g. a free migration slot), runs the kind's handler with a connection to the job's host,
retries transient host failures, lets the kind re-read what it changed and records the outcome.
Every status change goes through job_transition, which refuses illegal moves, writes the timeline,
pushes ``job.updated`` and, for the last child of a parent, ends the parent.
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.services import FROM_REQUEST, audit_record, audit_refusal, job_outcome
from core import access
from core.dispatch import enqueue_on_commit
from core.errors import Conflict, Forbidden, ServiceError
from core.net import valid_ip
from hosts.connections import host_connection, manager
from virt import DomainNotFound, HostConnection, OperationAborted, VirtError

from . import kinds
from .events import job_changed
from .kinds import AwaitChildren, JobCancelled, JobFailed, Kind, Outcome, Subject, Verdict
from .models import ACTIVE_STATUSES, TERMINAL_STATUSES, TRANSITIONS, Job, JobEvent, JobStatus

log = logging.getLogger(__name__)

RUN_TASK = "jobs.run"
WAIT = "wait"  # job_run's answer when the kind does not admit the job yet: the task asks again later


def _cfg(key: str, default):
    return settings.VIRTFLEET.get(key, default)


def _who(user) -> tuple[Any, str]:
    if user is not None and user.is_authenticated:
        return user, user.get_username()
    return None, "system"


def _refuse(user, what: str, target, error: ServiceError) -> NoReturn:
    """Record a refused request in the audit log, then refuse it."""
    audit_refusal(user=user, action=what, target=target, message=error.message)
    raise error


# --- options -----------------------------------------------------------------------------------------
def clean_params(spec: Kind, params: dict | None, *, target=None, target_host=None) -> dict:
    """The kind's options, checked by its serializer; unknown options are refused, not ignored."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ServiceError("params must be an object.", field="params")
    fields = spec.params().fields if spec.params else {}
    unknown = sorted(str(k) for k in params if k not in fields)
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise ServiceError(
            f"Unknown option(s) for {spec.name}: {', '.join(unknown)}"
            + (f"; allowed: {allowed}." if allowed else "; it takes none."),
            field="params",
        )
    if spec.params is None:
        return {}
    serializer = spec.params(data=params, context={"target": target, "target_host": target_host})
    if not serializer.is_valid():
        name, errors = next(iter(serializer.errors.items()))
        message = str(errors[0]) if isinstance(errors, list) else str(errors)
        raise ServiceError(message, field="params" if name == "non_field_errors" else f"params.{name}")
    return dict(serializer.validated_data)


# --- requesting --------------------------------------------------------------------------------------
def _busy(subject: Subject) -> Job | None:
    return Job.objects.active().filter(lock_key=subject.lock).first() if subject.lock else None


def _busy_error(subject: Subject, busy: Job | None) -> Conflict:
    what = f"{busy.get_kind_display().lower()} (job {busy.pk})" if busy else "another job"
    noun = subject.noun[:1].upper() + subject.noun[1:]
    return Conflict(f"{noun} {subject.name} is busy with {what}; wait for it to finish.", code="busy")


def job_request(
    *,
    kind: str,
    target,
    params: dict | None = None,
    user=None,
    ip: str | None = None,
    parent: Job | None = None,
    target_host=None,
) -> Job:
    """Create a job of ``kind`` on ``target`` and have a worker run it once this transaction commits.

    Refused (Forbidden) when ``user`` lacks the kind's right on the target (a child of ``parent``
    acts under the right its parent was checked for), (ServiceError) for bad options or when the
    kind says the target cannot take it now, and (Conflict) when the target already has an active
    job: never two jobs on one locked object at a time. Refusals are audited like the requests.
    """
    spec = kinds.get(kind)
    if spec is None:
        raise ServiceError(f"Unknown job kind {str(kind)[:40]!r}.", field="action")
    subject = spec.subject(target)
    if parent is None:
        access.require(user, spec.right, target, what=spec.audit)
    clean = clean_params(spec, params, target=target, target_host=target_host)
    busy = _busy(subject)
    if busy is not None:
        _refuse(user, spec.audit, target, _busy_error(subject, busy))
    if spec.check is not None:
        try:
            reason = spec.check(target, clean, target_host=target_host)
        except ServiceError as exc:
            _refuse(user, spec.audit, target, exc)
        if reason:
            _refuse(user, spec.audit, target, ServiceError(
                f"Cannot {spec.label.lower()} {subject.name}: {reason}.", code="not_allowed"
            ))  # fmt: skip
    if spec.facts is not None:
        clean = {**clean, **spec.facts(target, clean)}
    return _create(spec, subject, target, clean, user=user, ip=ip, parent=parent, target_host=target_host)


def _create(spec: Kind, subject: Subject, target, params: dict, *, user, ip, parent, target_host) -> Job:
    who, name = _who(user)
    host = subject.host
    task_id = str(uuidlib.uuid4())
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=spec.name,
                lock_key=subject.lock,
                vm=subject.vm,
                vm_uuid=subject.vm.uuid if subject.vm is not None else None,
                vm_name=subject.vm.name if subject.vm is not None else "",
                target_name=subject.label[:255],
                host=host,
                host_name=host.name if host is not None else "",
                target_host=target_host,
                params=params,
                parent=parent,
                requested_by=who,
                requested_by_name=name,
                requested_from=valid_ip(ip),
                celery_task_id=task_id,
                message="waiting for a worker",
            )
            JobEvent.objects.create(job=job, status=JobStatus.QUEUED, message=f"requested by {name}")
    except IntegrityError:
        _refuse(user, spec.audit, target, _busy_error(subject, _busy(subject)))
    job_changed(job)
    audit_record(
        action=spec.audit,
        user=user,
        ip=job.requested_from or FROM_REQUEST,
        target=target,
        message=f"job {job.pk} queued" + (f" to {target_host.name}" if target_host else ""),
        details={
            "job": job.pk,
            "params": spec.shown_params(params),
            **({"target_host": target_host.name} if target_host else {}),
        },
    )
    enqueue_on_commit(RUN_TASK, args=[job.pk], queue=spec.queue, task_id=task_id)
    return job


@dataclass
class BulkResult:
    jobs: list[Job] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    parent: Job | None = None


def jobs_request_many(
    *, kind: str, targets: Iterable, params: dict | None = None, user=None, ip=None, describe: Callable
) -> BulkResult:
    """One job of ``kind`` per target, under one parent job that follows them all (when there are
    several). Targets that cannot take it are listed with the reason (``describe(target)`` gives
    the identifying fields), not fatal; options wrong for every target are refused once."""
    spec = kinds.get(kind)
    if spec is None:
        raise ServiceError(f"Unknown job kind {str(kind)[:40]!r}.", field="action")
    targets = list(targets)
    clean_params(spec, params, target=targets[0] if targets else None)  # the same for every target
    result = BulkResult()
    with transaction.atomic():  # the children start when the parent is there to follow them
        for target in targets:
            try:
                result.jobs.append(job_request(kind=kind, target=target, params=params, user=user, ip=ip))
            except ServiceError as exc:
                if not isinstance(exc, Forbidden) and ((exc.field or "").startswith("params") or exc.field == "action"):
                    raise
                result.refused.append({**describe(target), "error": exc.message, "code": exc.code})
        if len(result.jobs) > 1:
            result.parent = _create_parent(spec, result.jobs, user=user, ip=ip)
    return result


def _create_parent(spec: Kind, children: list[Job], *, user, ip) -> Job:
    who, name = _who(user)
    now = timezone.now()
    parent = Job.objects.create(
        kind=BULK,
        params={"action": spec.name, "count": len(children)},
        status=JobStatus.RUNNING,
        started_at=now,
        awaiting_children=True,
        requested_by=who,
        requested_by_name=name,
        requested_from=valid_ip(ip),
        message=f"{len(children)} jobs queued",
    )
    JobEvent.objects.create(job=parent, status=JobStatus.RUNNING, message=f"requested by {name}: {len(children)} jobs")
    Job.objects.filter(pk__in=[c.pk for c in children]).update(parent=parent)
    for child in children:
        child.parent = parent
    job_changed(parent)
    return parent


def _bulk_title(job: Job) -> str:
    action = kinds.kind_of(str(job.params.get("action", "")))
    return f"{action.label} (bulk)"


def children_summary(parent: Job, children: list[Job]) -> Outcome | JobFailed | JobCancelled:
    """How a parent ends by default: succeeded when every child did, else what went wrong."""
    counts: dict[str, int] = {}
    for child in children:
        counts[child.status] = counts.get(child.status, 0) + 1
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    result = {"children": counts}
    if parent.cancel_requested:
        return JobCancelled(f"cancelled: {text}", result=result)
    if counts.get(JobStatus.SUCCEEDED, 0) == len(children):
        return Outcome(f"all {len(children)} jobs succeeded", result)
    failed = [c for c in children if c.status != JobStatus.SUCCEEDED][:5]
    lines = "; ".join(f"{c.subject_name}: {c.error or c.message or c.status}" for c in failed)
    return JobFailed(f"{text} — {lines}", code="children_failed", result=result)


BULK = "bulk"
kinds.register(
    Kind(
        name=BULK,
        label="Bulk operation",
        handler=None,  # created running: its children do the work
        subject=lambda _: Subject(noun="jobs", name="", lock=None),
        lock="",
        connect=False,
        title_of=_bulk_title,
        children_done=children_summary,
    )
)


# --- cancelling -----------------------------------------------------------------------------------------
def job_cancel(*, job: Job, user=None) -> Job:
    """Cancel a queued job at once; ask a running one to stop where it can; a parent's active
    children are cancelled with it."""
    access.require(user, access.CANCEL, job, what="job.cancel")
    _, who = _who(user)
    error: ServiceError | None = None
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status == JobStatus.QUEUED:
            job_transition(job, JobStatus.CANCELLED, message=f"cancelled by {who} before it started")
            audit_record(action="job.cancel", user=user, target=job, message="cancelled before it started")
        elif job.status == JobStatus.RUNNING:
            if not job.cancellable:
                error = ServiceError(f"A running {job.get_kind_display().lower()} cannot be stopped half-way.")
            elif not job.cancel_requested:
                Job.objects.filter(pk=job.pk).update(cancel_requested=True, version=F("version") + 1)
                job.cancel_requested = True
                job.version = _version(job)
                JobEvent.objects.create(
                    job=job, status=job.status, progress=job.progress, message=f"cancel requested by {who}"
                )
                job_changed(job)
                audit_record(action="job.cancel", user=user, target=job, message="cancel requested while running")
        else:
            error = ServiceError(f"Job {job.pk} has already {job.status}.")
    if error is not None:
        _refuse(user, "job.cancel", job, error)
    for child in Job.objects.filter(parent=job).active():
        try:
            job_cancel(job=child, user=None)
        except ServiceError:
            pass  # a child that cannot stop half-way ends on its own
    return job


# --- the state machine -------------------------------------------------------------------------------------
class IllegalTransition(Exception):
    pass


def _version(job: Job) -> int:
    return Job.objects.values_list("version", flat=True).get(pk=job.pk)


def job_transition(
    job: Job,
    to: str,
    *,
    message: str = "",
    error: str = "",
    error_code: str = "",
    progress: int | None = None,
    result: dict | None = None,
) -> Job:
    """Move ``job`` to status ``to`` (refusing moves TRANSITIONS does not allow), record and push it."""
    if to not in TRANSITIONS[JobStatus(job.status)]:
        raise IllegalTransition(f"job {job.pk}: {job.status} → {to} is not allowed")
    now = timezone.now()
    changes: dict[str, Any] = {"status": to, "message": (message or job.message)[:500]}
    if to == JobStatus.RUNNING:
        changes.update(started_at=now, worker=job.worker, attempts=job.attempts)
    if to in TERMINAL_STATUSES:
        changes.update(finished_at=now, awaiting_children=False)
        if to == JobStatus.SUCCEEDED:
            changes["progress"] = 100
    if progress is not None:
        changes["progress"] = max(0, min(100, progress))
    if error:
        changes.update(error=error, error_code=error_code)
    if result is not None:
        changes["result"] = result
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(**changes, version=F("version") + 1)
        for name, value in changes.items():
            setattr(job, name, value)
        job.version = _version(job)
        JobEvent.objects.create(job=job, at=now, status=to, progress=job.progress, message=(error or message)[:500])
        job_changed(job)
        if to in TERMINAL_STATUSES:
            _audit_end(job, to, error=error, error_code=error_code)
            if job.parent_id:
                _child_ended(job)
    return job


def _audit_end(job: Job, status: str, *, error: str, error_code: str) -> None:
    audit_record(
        action="job.finished",
        user=job.requested_by if job.requested_by_id else None,
        username=job.requested_by_name,
        ip=job.requested_from,
        target=job,
        outcome=job_outcome(status),
        message=(error or job.message)[:500],
        details={
            "job": job.pk,
            "kind": job.kind,
            "status": status,
            **({"error_code": error_code} if error_code else {}),
        },
    )


def job_progress(job: Job, progress: int, message: str, *, record: bool = False, push: bool = True) -> None:
    """Report progress of a running job (pushed live; written to the timeline when ``record``).

    ``push=False``: the caller sends an event of its own that carries the job (migration.progress)."""
    job.progress = max(0, min(100, int(progress)))
    job.message = message[:500]
    updated = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        progress=job.progress, message=job.message, version=F("version") + 1
    )
    if not updated:
        return
    job.version = _version(job)
    if record:
        JobEvent.objects.create(job=job, status=job.status, progress=job.progress, message=job.message)
    if push:
        job_changed(job)


def job_remark(job: Job, message: str) -> None:
    """Add a line to a job's timeline after the fact (what a later cleanup did for it); its
    status stays."""
    JobEvent.objects.create(job=job, status=job.status, progress=job.progress, message=message[:500])


# --- parents and children -----------------------------------------------------------------------------------
def _child_ended(child: Job) -> None:
    """A child reached its end: the parent's progress follows, and the last child ends the parent."""
    parent = Job.objects.select_for_update(of=("self",)).filter(children=child).first()
    if parent is None or parent.status in TERMINAL_STATUSES:
        return
    statuses = list(Job.objects.filter(parent=parent).values_list("status", flat=True))
    done = sum(1 for s in statuses if s in TERMINAL_STATUSES)
    job_progress(parent, 100 * done // max(1, len(statuses)), f"{done} of {len(statuses)} jobs ended")
    if parent.awaiting_children and done == len(statuses):
        _end_parent(parent)


def _end_parent(parent: Job) -> None:
    children = list(Job.objects.filter(parent=parent).select_related("target_host"))
    spec = parent.spec
    verdict = (spec.children_done or children_summary)(parent, children)
    _end(parent, verdict)


def _end(job: Job, verdict: Outcome | JobFailed | JobCancelled) -> None:
    if isinstance(verdict, JobFailed):
        job_transition(job, JobStatus.FAILED, message=verdict.message, error=verdict.message,
                       error_code=verdict.code, result=verdict.result)  # fmt: skip
    elif isinstance(verdict, JobCancelled):
        job_transition(job, JobStatus.CANCELLED, message=verdict.message, result=verdict.result)
    else:
        job_transition(job, JobStatus.SUCCEEDED, message=verdict.message, result=verdict.result)


def _await_children(job: Job, message: str) -> None:
    """The handler handed the rest to the job's children: free the worker; the last child ends it."""
    with transaction.atomic():
        current = Job.objects.select_for_update().get(pk=job.pk)
        if current.status in TERMINAL_STATUSES:
            return
        Job.objects.filter(pk=job.pk).update(awaiting_children=True, worker="")
        current.awaiting_children, current.worker = True, ""
        job_progress(current, current.progress, message, record=True)
        if not Job.objects.filter(parent=current).active().exists():
            _end_parent(current)


# --- running (on a worker) ------------------------------------------------------------------------------
class Context:
    """What a handler gets (jobs.kinds.JobContext): the job, a live connection to its host, and
    reporting helpers."""

    def __init__(self, job: Job, conn: HostConnection | None):
        self.job = job
        self.conn = conn
        self.params = job.params

    @property
    def uuid(self) -> str:
        return str(self.job.vm_uuid)

    def progress(self, percent: int, message: str, *, record: bool = False) -> None:
        job_progress(self.job, percent, message, record=record)

    def cancelled(self) -> bool:
        return Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists()

    def note(self, **facts) -> None:
        """Keep ``facts`` in the job's result (what it made, for undo), at once: a worker that dies
        leaves them for the reaper."""
        job = self.job
        job.result = {**(job.result or {}), **facts}
        Job.objects.filter(pk=job.pk).update(result=job.result)

    def request_child(self, *, kind: str, target, params: dict | None = None, target_host=None) -> Job:
        """Start a child job, under this job's requester and right."""
        job = self.job
        return job_request(kind=kind, target=target, params=params, user=job.requested_by, ip=None, parent=job,
                           target_host=target_host)  # fmt: skip


def _claim(job: Job, spec: Kind, worker: str) -> Job | str | None:
    """queued → running for this worker; WAIT when the kind does not admit it yet; None when another
    delivery took it or it ended meanwhile."""
    with transaction.atomic():
        current = (
            Job.objects.select_for_update(of=("self",))
            .select_related("host", "target_host", "vm")
            .filter(pk=job.pk)
            .first()
        )
        if current is None or current.status != JobStatus.QUEUED:
            return None
        if spec.admit is not None:
            waiting = spec.admit(current)
            if waiting:
                if current.message != waiting:
                    Job.objects.filter(pk=job.pk).update(message=waiting, version=F("version") + 1)
                    current.message, current.version = waiting, _version(current)
                    job_changed(current)
                return WAIT
        current.worker = worker
        current.attempts += 1
        return job_transition(current, JobStatus.RUNNING, message="running", progress=0)


def job_run(job_id: int, *, worker: str = "") -> str:
    """Run job ``job_id`` (the ``jobs.run`` task; safe to deliver twice). Returns WAIT when its kind
    does not admit it yet (the task then asks again), else ""."""
    job = Job.objects.select_related("host", "vm", "target_host").filter(pk=job_id).first()
    if job is None or job.status in TERMINAL_STATUSES:
        return ""  # deleted, cancelled before it started, or already ended (duplicate delivery)
    if job.status == JobStatus.RUNNING:
        if not job.awaiting_children:
            # Delivered again after the worker running it died: end it the way the reaper does.
            job_end_interrupted(job, reason=f"worker {job.worker or '?'} stopped while running it")
        return ""
    spec = kinds.get(job.kind)
    if spec is None or spec.handler is None:
        claimed = _claim(job, kinds.kind_of(job.kind), worker)
        if isinstance(claimed, Job):
            _finish(
                claimed, JobStatus.FAILED, error=f"this worker does not know how to {job.kind}", code="unknown_kind"
            )
        return ""
    claimed = _claim(job, spec, worker)
    if claimed == WAIT:
        return WAIT
    if isinstance(claimed, Job):
        _execute(claimed, spec)
    return ""


def _execute(job: Job, spec: Kind) -> None:
    """The handler, with bounded retries of transient host failures; then the outcome recorded."""
    retries = int(_cfg("JOB_RETRIES", 3)) if spec.retry_transient else 0
    backoff = float(_cfg("JOB_RETRY_BACKOFF", 2.0))
    for attempt in range(1, retries + 2):
        try:
            outcome = spec.handler(Context(job, _connection(job, spec)))  # type: ignore[misc]
        except JobCancelled as exc:
            _finish(job, JobStatus.CANCELLED, message=exc.message, result=exc.result)
        except JobFailed as exc:
            _finish(job, JobStatus.FAILED, error=exc.message, code=exc.code, result=exc.result)
        except OperationAborted as exc:
            _finish(job, JobStatus.CANCELLED, message=f"aborted: {exc.message}")
        except DomainNotFound:
            _finish(job, JobStatus.FAILED, error=f"the VM no longer exists on {job.host_name}", code="not_found")
        except VirtError as exc:
            if exc.transient and attempt <= retries:
                delay = backoff * 2 ** (attempt - 1)
                if job.host is not None:
                    manager().drop(job.host.pk)  # reconnect on the next try
                job_progress(job, job.progress,
                             f"{exc.message} — retrying in {delay:g} s (attempt {attempt + 1} of {retries + 1})",
                             record=True)  # fmt: skip
                time.sleep(delay)
                continue
            _finish(job, JobStatus.FAILED, error=str(exc), code=type(exc).__name__)
        except Exception as exc:
            log.exception("job %s crashed", job.pk)
            _finish(job, JobStatus.FAILED, error=f"internal error: {exc}", code="internal")
        else:
            if isinstance(outcome, AwaitChildren):
                _await_children(job, outcome.message)
            else:
                _finish(job, JobStatus.SUCCEEDED, message=outcome.message, result=outcome.result)
        return


def _connection(job: Job, spec: Kind) -> HostConnection | None:
    if not spec.connect:
        return None
    if job.host is None:
        raise JobFailed("its host was removed from Virtfleet", code="no_host")
    return host_connection(job.host)


def _after(job: Job) -> None:
    """Let the kind re-read what the job changed, so rows show the outcome even without a listener."""
    after = job.spec.after
    if after is None:
        return
    try:
        after(job)
    except Exception as exc:  # a failed re-read must not change how the job ended
        log.info("could not re-read after job %s: %s", job.pk, exc)


def _undo(job: Job) -> str:
    """Let the kind remove what a job that did not succeed made; what it says is added to the job's end."""
    undo = job.spec.undo
    if undo is None:
        return ""
    try:
        said = undo(job)
    except Exception as exc:
        log.warning("undoing job %s failed: %s", job.pk, exc)
        return f"could not undo what it made: {exc}"
    return said or ""


def _with_undo(text: str, undone: str) -> str:
    return f"{text}; {undone}" if undone else text


def _finish(job: Job, status: str, *, message: str = "", error: str = "", code: str = "",
            result: dict | None = None) -> None:  # fmt: skip
    if status != JobStatus.SUCCEEDED:
        undone = _undo(job)
        message, error = (
            _with_undo(message, undone) if message else message,
            _with_undo(error, undone) if error else error,
        )
    _after(job)
    with transaction.atomic():
        current = Job.objects.select_for_update().get(pk=job.pk)
        if current.status in TERMINAL_STATUSES:
            return  # the reaper got there first
        job.status = current.status
        job.cancel_requested = current.cancel_requested
        job_transition(job, status, message=message or error, error=error, error_code=code, result=result)


# --- jobs whose worker died -----------------------------------------------------------------------------------
def job_end_interrupted(job: Job, *, reason: str) -> Job:
    """End a job left running by a dead worker, judged by what its kind finds now."""
    spec = job.spec
    verdict: Verdict | None = None
    if spec.judge is not None:
        try:
            verdict = spec.judge(job)
        except Exception as exc:
            log.info("interrupted job %s: cannot judge it: %s", job.pk, exc)
    undone = "" if verdict is not None and verdict.done else _undo(job)
    _after(job)
    with transaction.atomic():
        current = Job.objects.select_for_update().get(pk=job.pk)
        if current.status != JobStatus.RUNNING:
            return current
        if verdict is not None and verdict.done:
            return job_transition(current, JobStatus.SUCCEEDED, message=f"interrupted ({reason}), but {verdict.seen}")
        error = (
            f"interrupted: {reason}; {verdict.seen}. {verdict.advice}"
            if verdict is not None
            else f"interrupted: {reason}; run it again"
        )
        return job_transition(current, JobStatus.FAILED, error=_with_undo(error, undone), error_code="interrupted")


def jobs_reap(*, worker_alive: Callable[[str], bool], dead_worker: str | None = None) -> list[Job]:
    """End running jobs whose worker is gone (called on worker start and periodically); a parent
    left waiting for children that have all ended (a crash in between) ends too."""
    ended = []
    for job in Job.objects.filter(status=JobStatus.RUNNING).select_related("host", "target_host", "vm"):
        if job.awaiting_children:
            if not Job.objects.filter(parent=job, status__in=ACTIVE_STATUSES).exists():
                with transaction.atomic():
                    if Job.objects.select_for_update().filter(pk=job.pk, status=JobStatus.RUNNING).exists():
                        _end_parent(job)
                        ended.append(job)
            continue
        if job.worker == dead_worker or not worker_alive(job.worker):
            reason = (
                f"worker {job.worker or '?'} restarted"
                if job.worker == dead_worker
                else f"worker {job.worker or '?'} stopped"
            )
            ended.append(job_end_interrupted(job, reason=reason))
    return ended
