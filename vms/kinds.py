"""The VM lifecycle operations as job kinds: one registration per action of vms.actions.

Each handler first asks libvirt whether the action is already done (then the job succeeds without
touching the VM), acts through virt/, and leaves the re-read of the VM row to ``after``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from rest_framework import serializers

from hosts.connections import host_connection
from jobs import kinds
from jobs.kinds import JobCancelled, JobContext, JobFailed, Kind, Outcome, Subject, Verdict
from jobs.params import Flag, WholeNumber
from virt import DomainNotFound, VirtError

from . import actions
from .actions import ACTIONS, Seen
from .inventory import vm_reread
from .models import VM


def vm_subject(vm: VM) -> Subject:
    return Subject(noun="VM", name=vm.name, lock=f"vm:{vm.uuid}", vm=vm, host=vm.host)


def seen_live(ctx_or_conn, uuid: str) -> Seen:
    """What libvirt says now about the domain (Seen(None) when the host no longer has it)."""
    conn = getattr(ctx_or_conn, "conn", ctx_or_conn)
    try:
        status = conn.domain_status(uuid)
    except DomainNotFound:
        return Seen(state=None)
    return Seen(state=str(status.state), managed_save=status.managed_save, autostart=status.autostart)


def _state(ctx: JobContext) -> str:
    return str(ctx.conn.power_state(ctx.uuid)[0])


# --- options ----------------------------------------------------------------------------------------------
def _shutdown_timeout() -> int:
    return int(settings.VIRTFLEET.get("SHUTDOWN_TIMEOUT", 120))


class ShutdownParams(serializers.Serializer):
    timeout = WholeNumber(unit="seconds", min_value=1, max_value=3600, default=_shutdown_timeout,
                          help_text="seconds to wait for the guest to power off")  # fmt: skip


class StartParams(serializers.Serializer):
    force_boot = Flag(help_text="boot afresh, discarding a saved state")


class DeleteParams(serializers.Serializer):
    remove_storage = Flag(help_text="also delete the VM's disk volumes")
    force = Flag(help_text="power a running VM off first")


PARAMS = {actions.SHUTDOWN: ShutdownParams, actions.START: StartParams, actions.DELETE: DeleteParams}


# --- handlers ----------------------------------------------------------------------------------------------
def _start(ctx: JobContext) -> Outcome:
    restored = ctx.conn.start(ctx.uuid, force_boot=bool(ctx.params.get("force_boot")))
    return Outcome("restored from its saved state" if restored else "started", {"restored": restored})


def _shutdown(ctx: JobContext) -> Outcome:
    state = _state(ctx)
    if state == "paused":
        raise JobFailed("the VM is paused and cannot react to the power button; resume it first", code="paused")
    timeout = int(ctx.params.get("timeout") or _shutdown_timeout())
    resend = float(settings.VIRTFLEET.get("SHUTDOWN_RESEND", 10))
    started = time.monotonic()
    last_press = 0.0
    while True:
        elapsed = time.monotonic() - started
        if state == "shutoff":
            return Outcome(f"powered off after {elapsed:.1f} s", {"seconds": round(elapsed, 1)})
        if ctx.cancelled():
            raise JobCancelled()
        if elapsed >= timeout:
            raise JobFailed(f"the guest did not power off within {timeout} s; force it off if it is hung",
                            code="shutdown_timeout")  # fmt: skip
        if elapsed - last_press >= resend or last_press == 0.0:
            _press_power_button(ctx)
            last_press = elapsed or 1e-9
        ctx.progress(min(99, int(100 * elapsed / timeout)),
                     f"waiting for the guest to power off ({elapsed:.0f} s of {timeout} s)")  # fmt: skip
        time.sleep(0.5)
        state = _state(ctx)


def _press_power_button(ctx: JobContext) -> None:
    # Guests miss a power-button press made too early in boot; libvirt never repeats it.
    try:
        ctx.conn.shutdown(ctx.uuid)
    except VirtError:
        if _state(ctx) != "shutoff":
            raise


def _delete(ctx: JobContext) -> Outcome:
    if _state(ctx) not in ("shutoff", "unknown"):
        if not ctx.params.get("force"):
            raise JobFailed("the VM is running; shut it down first or delete with force", code="running")
        ctx.progress(20, "powering the VM off", record=True)
        ctx.conn.destroy(ctx.uuid)
    remove = bool(ctx.params.get("remove_storage"))
    ctx.progress(50, "removing the definition" + (" and its volumes" if remove else ""))
    outcome = ctx.conn.undefine(ctx.uuid, remove_storage=remove)
    parts = ["deleted"]
    if outcome.removed:
        parts.append(f"removed {len(outcome.removed)} volume(s): {', '.join(outcome.removed)}")
    if outcome.kept:
        parts.append("kept " + "; ".join(f"{label} ({why})" for label, why in outcome.kept))
    return Outcome(", ".join(parts), {"removed": list(outcome.removed), "kept": [list(k) for k in outcome.kept]})


def _simple(call: Callable[[JobContext], object], message: str) -> Callable[[JobContext], Outcome]:
    def handler(ctx: JobContext) -> Outcome:
        call(ctx)
        return Outcome(message)

    return handler


HANDLERS: dict[str, Callable[[JobContext], Outcome]] = {
    actions.START: _start,
    actions.SHUTDOWN: _shutdown,
    actions.FORCE_OFF: _simple(lambda c: c.conn.destroy(c.uuid), "powered off"),
    actions.REBOOT: _simple(lambda c: c.conn.reboot(c.uuid), "reboot requested from the guest (ACPI)"),
    actions.RESET: _simple(lambda c: c.conn.reset(c.uuid), "reset"),
    actions.SUSPEND: _simple(lambda c: c.conn.suspend(c.uuid), "suspended"),
    actions.RESUME: _simple(lambda c: c.conn.resume(c.uuid), "resumed"),
    actions.SAVE: _simple(lambda c: c.conn.managed_save(c.uuid), "state saved; the next start restores it"),
    actions.AUTOSTART_ON: _simple(lambda c: c.conn.set_autostart(c.uuid, True), "autostart on"),
    actions.AUTOSTART_OFF: _simple(lambda c: c.conn.set_autostart(c.uuid, False), "autostart off"),
    actions.DELETE: _delete,
}


def _unless_done(action: actions.Action, handler: Callable[[JobContext], Outcome]) -> Callable[[JobContext], Outcome]:
    """First ask libvirt whether it is already so: then succeed without acting."""

    def run(ctx: JobContext) -> Outcome:
        if action.done is not None and action.done(seen_live(ctx, ctx.uuid)):
            return Outcome(f"nothing to do: {action.already(past=True)}", {"already": True})
        return handler(ctx)

    return run


def _judge(action: actions.Action) -> Callable:
    def judge(job) -> Verdict:
        if job.host is None:
            return Verdict(False, "its host was removed from Virtfleet")
        try:
            seen = seen_live(host_connection(job.host), str(job.vm_uuid))
        except VirtError:
            return Verdict(False, "its state is unknown (host unreachable)")
        if action.done is not None and action.done(seen):
            return Verdict(True, f"the VM reached its target state ({action.done_words})")
        now = f"the VM is {seen.state}" if seen.state else "the VM no longer exists"
        return Verdict(False, now, advice="Check the VM and run the operation again if needed.")

    return judge


def reread_vm(job) -> None:
    """Re-read the job's VM from libvirt, so its row shows the outcome even without a listener."""
    if job.host is not None and job.vm_uuid:
        vm_reread(host=job.host, uuid=str(job.vm_uuid))


def _check(kind: str):
    return lambda vm, params, **_: actions.refusal(vm, kind, params=params)


for _action in ACTIONS.values():
    kinds.register(
        Kind(
            name=_action.kind,
            label=_action.label,
            handler=_unless_done(_action, HANDLERS[_action.kind]),
            subject=vm_subject,
            lock="vm",
            queue="lifecycle",
            right="operate",
            audit_action=f"vm.{_action.kind}",
            params=PARAMS.get(_action.kind),
            check=_check(_action.kind),
            judge=_judge(_action),
            after=reread_vm,
            cancellable=_action.cancellable,
        )
    )
