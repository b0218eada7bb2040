"""The registry of job kinds: everything the engine needs to know about one kind of operation.

An app adds an operation by registering a ``Kind`` once (in its ``kinds`` module, imported by its
AppConfig.ready): what it locks, who may ask for it, how its options are checked, what refuses it,
its handler, what "done" means, what happens when it is interrupted, whether it can be cancelled
while it runs, and its queue. The engine (jobs.engine) does the rest — creation under the lock,
claim, transitions, progress, cancel, retries, parents and children, the reaper — for every kind
alike, and nothing in it names a kind.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

# This module imports nothing of the engine or the models (they import it): a job row is typed as
# ``Job`` = Any here; it is a jobs.models.Job.
Job = Any


class JobContext(Protocol):
    """What a handler gets (jobs.engine implements it)."""

    job: Job
    conn: Any  # a virt.HostConnection to the job's host, when the kind connects
    params: dict

    @property
    def uuid(self) -> str: ...  # the job's VM, for VM kinds

    def progress(self, percent: int, message: str, *, record: bool = False) -> None: ...

    def cancelled(self) -> bool: ...

    def request_child(self, *, kind: str, target: Any, params: dict | None = None, target_host: Any = None) -> Job: ...

    def note(self, **facts: Any) -> None: ...  # kept in Job.result: what undo needs after a crash too


@dataclass(frozen=True)
class Subject:
    """What a job is about and locks: ``lock`` is its key in the one-active-job rule (None: no lock)."""

    noun: str  # "VM", "host", "pool" — how messages name it
    name: str
    lock: str | None
    vm: Any = None  # the VM row, when the job is about a VM
    host: Any = None  # the host the job runs against (its connection is the handler's)
    label: str = ""  # how jobs name it when it is not a VM ("pool images on lab1")

    @classmethod
    def of_host(cls, host) -> Subject:
        return cls(noun="host", name=host.name, lock=f"host:{host.pk}", host=host)


@dataclass(frozen=True)
class Outcome:
    """A handler's success: what the job's message says, and what it keeps as its result."""

    message: str
    result: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AwaitChildren:
    """A handler's answer when it has started child jobs: the job stays running (without holding
    a worker) and ends through its kind's ``children_done`` once the last child has ended."""

    message: str


@dataclass(frozen=True)
class Verdict:
    """What the engine learns about an interrupted job: did its goal come about, and what is seen."""

    done: bool
    seen: str  # "the VM is running", "the VM reached its target state (paused)"
    advice: str = "Check it and run the operation again if needed."


class JobFailed(Exception):
    """A handler's failure, in words for the user (and a code for scripts)."""

    def __init__(self, message: str, *, code: str = "", result: dict | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.result = result


class JobCancelled(Exception):
    """A handler stopping at a safe point because cancellation was asked for."""

    def __init__(self, message: str = "cancelled on request", *, result: dict | None = None):
        super().__init__(message)
        self.message = message
        self.result = result


@dataclass(frozen=True)
class Kind:
    name: str  # stored in Job.kind; never rename one that has rows
    label: str  # "Suspend", "Migrate"
    handler: Callable[[JobContext], Outcome | AwaitChildren] | None
    subject: Callable[[Any], Subject]  # the target object → what the job is about and locks
    lock: str = "vm"  # the kind of object it locks: "vm", "host", "pool", ... ("" for none)
    queue: str = "lifecycle"
    right: str = "operate"  # core.access action needed on the target to ask for it and to cancel it
    audit_action: str = ""  # default "<lock>.<name>"
    params: type | None = None  # a DRF Serializer class of its options (None: it takes none)
    # what the handler needs to know of the target besides the options (pool and volume names...):
    # facts(target, options) → kept with the options in Job.params
    facts: Callable[..., dict] | None = None
    # why the target cannot take it now ("" = it can): check(target, params, target_host=...)
    check: Callable[..., str] | None = None
    admit: Callable[[Job], str] | None = None  # "" = may start now; else why it waits (asked again in 2 s)
    judge: Callable[[Job], Verdict] | None = None  # an interrupted job: did it get there anyway?
    after: Callable[[Job], None] | None = None  # once it ended: re-read what it changed
    # a job that did not succeed (failed, cancelled, interrupted): remove what it made, say what
    undo: Callable[[Job], str] | None = None
    children_done: Callable[[Job, list[Job]], Outcome | JobFailed | JobCancelled] | None = None
    cancellable: bool = False  # may a RUNNING job be asked to stop (its handler checks ctx.cancelled())?
    retry_transient: bool = True  # retry, with backoff, when the host drops the connection
    connect: bool = True  # the handler gets a connection to the job's host (ctx.conn)
    title_of: Callable[[Job], str] | None = None  # how a job of this kind is named ("Suspend (bulk)")
    panel: str = ""  # a template shown under an active job's progress bar (migration statistics)
    # options kept for the handler but never shown (audit log, job page, API): dotted paths such as
    # "plan.cloud_init.password_hash"
    secret_params: tuple[str, ...] = ()
    options_template: str = ""  # rows of the job page's table that show its options (else a plain dump)

    def shown_params(self, params: dict | None) -> dict:
        """``params`` with the secret ones replaced by "(hidden)", for every place that shows them."""
        if not params or not self.secret_params:
            return params or {}
        shown = copy.deepcopy(params)
        for path in self.secret_params:
            *parents, last = path.split(".")
            node: Any = shown
            for key in parents:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict) and node.get(last):
                node[last] = "(hidden)"
        return shown

    def title(self, job: Job | None = None) -> str:
        return self.title_of(job) if self.title_of and job is not None else self.label

    @property
    def audit(self) -> str:
        return self.audit_action or f"{self.lock or 'job'}.{self.name}"


_KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add a kind to the engine (once per process, from the app that owns it)."""
    existing = _KINDS.get(kind.name)
    if existing is not None and existing != kind:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind (tests that register their own)."""
    _KINDS.pop(name, None)


def get(name: str) -> Kind | None:
    return _KINDS.get(name)


def all_kinds() -> list[Kind]:
    return list(_KINDS.values())


def choices() -> list[tuple[str, str]]:
    """(name, label) of every kind, for filter menus and the API schema."""
    return sorted(((k.name, k.label) for k in _KINDS.values()), key=lambda c: c[1])


def _unknown(name: str) -> Kind:
    return Kind(name=name, label=name.replace("_", " ").capitalize(), handler=None, subject=lambda obj: None)  # type: ignore[arg-type, return-value]


def kind_of(name: str) -> Kind:
    """The kind registered as ``name``, or a stand-in that names it (rows of a removed kind)."""
    return _KINDS.get(name) or _unknown(name)
