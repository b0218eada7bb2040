"""Which operations are allowed on a VM in which state, and what "done" means for each — one table
that buttons, the API, the request check, the handlers and the judging of interrupted jobs all read.

``refusal`` answers from the VM row (which mirrors libvirt) before a job is created; the handler
asks ``is_done`` again of the live domain when the job runs (someone may have got there first),
and the reaper asks it once more of a job whose worker died.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .models import VM

RUNNING = {"running"}
ACTIVE = {"running", "paused", "shutting_down", "pmsuspended", "crashed"}
STOPPED = {"shutoff", "crashed"}

START, SHUTDOWN, FORCE_OFF, REBOOT, RESET = "start", "shutdown", "force_off", "reboot", "reset"
SUSPEND, RESUME, SAVE, AUTOSTART_ON, AUTOSTART_OFF, DELETE = (
    "suspend", "resume", "save", "autostart_on", "autostart_off", "delete"
)  # fmt: skip


@dataclass(frozen=True)
class Seen:
    """What "done" is judged by: the power state (None: no such domain), saved state, autostart."""

    state: str | None
    managed_save: bool = False
    autostart: bool = False

    @classmethod
    def of_row(cls, vm: VM) -> Seen:
        return cls(state=None if vm.is_gone else vm.state, managed_save=vm.managed_save, autostart=vm.autostart)


@dataclass(frozen=True)
class Action:
    kind: str
    label: str
    allowed_states: frozenset[str]
    done: Callable[[Seen], bool] | None = None  # already there: the job succeeds without acting
    done_words: str = ""  # "paused" in "it is already paused" / "the VM was already paused"
    done_of: str = ""  # what is already so: "" for the VM itself, "autostart"
    needs_persistent: bool = False
    danger: bool = False
    confirm: str = ""  # question the UI asks first ("" = no confirmation)
    starts_vm: bool = False  # refused on a host in maintenance
    cancellable: bool = False  # a running job of it stops on request (it waits for the guest)
    help: str = ""

    def already(self, *, past: bool = False) -> str:
        """How "it is done already" reads: at request time (present) or in a job's outcome (past)."""
        if self.done_of:
            return f"{self.done_of} {'was' if past else 'is'} already {self.done_words}"
        return f"{'the VM was' if past else 'it is'} already {self.done_words}"


def _state_is(*states: str) -> Callable[[Seen], bool]:
    return lambda seen: seen.state in states


ACTIONS: dict[str, Action] = {
    a.kind: a
    for a in [
        Action(START, "Start", frozenset(STOPPED), done=_state_is("running"), done_words="running",
               needs_persistent=True, starts_vm=True, help="Boot the VM, or restore it if its state was saved."),
        Action(SHUTDOWN, "Shut down", frozenset(RUNNING), done=_state_is("shutoff"), done_words="shut off",
               cancellable=True, help="Press the ACPI power button and wait for the guest to power off."),
        Action(FORCE_OFF, "Force off", frozenset(ACTIVE), done=_state_is("shutoff"), done_words="shut off",
               danger=True, confirm="Power the VM off at once? Unsaved data in the guest is lost.",
               help="Pull the plug."),
        Action(REBOOT, "Reboot", frozenset(RUNNING), help="Ask the guest to reboot (ACPI)."),
        Action(RESET, "Reset", frozenset({"running", "paused"}), danger=True,
               confirm="Reset the VM like a hardware reset button? Unsaved data in the guest is lost.",
               help="Hard reset, without asking the guest."),
        Action(SUSPEND, "Suspend", frozenset(RUNNING), done=_state_is("paused"), done_words="paused",
               help="Pause the vCPUs; memory stays on the host."),
        Action(RESUME, "Resume", frozenset({"paused"}), done=_state_is("running"), done_words="running",
               help="Let a paused VM run again."),
        Action(SAVE, "Save state", frozenset({"running", "paused"}),
               done=lambda seen: seen.state == "shutoff" and seen.managed_save, done_words="saved",
               needs_persistent=True,
               help="Write memory to the host and stop; the next start resumes where it was."),
        Action(AUTOSTART_ON, "Autostart on", frozenset(ACTIVE | STOPPED | {"unknown"}),
               done=lambda seen: seen.autostart, done_words="on", done_of="autostart", needs_persistent=True,
               help="Start with the host."),
        Action(AUTOSTART_OFF, "Autostart off", frozenset(ACTIVE | STOPPED | {"unknown"}),
               done=lambda seen: not seen.autostart, done_words="off", done_of="autostart",
               needs_persistent=True),
        Action(DELETE, "Delete", frozenset(STOPPED | ACTIVE | {"unknown"}), done=_state_is(None),
               done_words="deleted", danger=True, confirm="Delete this VM's definition from its host?",
               help="Undefine the VM (optionally with its disk volumes)."),
    ]
}  # fmt: skip
LIFECYCLE_KINDS = list(ACTIONS)


def is_done(kind: str, seen: Seen) -> bool:
    """Is what ``kind`` is for already so? (False for actions that are never "already done".)"""
    action = ACTIONS.get(kind)
    return bool(action and action.done and action.done(seen))


def refusal(vm: VM, kind: str, *, params: dict | None = None) -> str:
    """Why ``kind`` cannot run on ``vm`` now, or "" when it can."""
    params = params or {}
    action = ACTIONS.get(kind)
    if action is None:
        return f"unknown action {kind!r}"
    if vm.is_gone:
        return "the VM no longer exists on any host"
    host = vm.host
    if host.state != "connected":
        return f"its host {host.name} is {host.get_state_display().lower()}"
    if action.starts_vm and vm.template:
        return "it is a template: templates never start; create a VM from it, or make it a regular VM again"
    if action.starts_vm and host.in_maintenance:
        return f"its host {host.name} is in maintenance; migrate the VM or take the host out of maintenance"
    if action.needs_persistent and not vm.persistent:
        return "the VM is transient (not defined on its host)"
    if kind == DELETE and vm.state in ACTIVE and not params.get("force"):
        return "it is running; shut it down first, or delete with force to power it off"
    if is_done(kind, Seen.of_row(vm)):
        return action.already()
    if vm.state not in action.allowed_states:
        return f"not possible while the VM is {vm.get_state_display().lower()}"
    return ""


def can(vm: VM, kind: str) -> bool:
    return not refusal(vm, kind)


def available(vm: VM) -> list[tuple[Action, str]]:
    """Every action with its refusal reason ("" = allowed), in display order, for buttons."""
    return [(action, refusal(vm, kind)) for kind, action in ACTIONS.items()]


# --- the VM's display, as the console and the fleet table ask --------------------------------------------
CONSOLE_STATES = {"running", "paused", "shutting_down", "crashed"}


def console_refusal(vm: VM) -> str:
    """Why ``vm``'s console cannot be opened now, from the inventory ("" = try it).

    A quick answer for buttons and the page; console.services.console_ticket_issue checks the
    live domain.
    """
    if vm.is_gone:
        return "the VM no longer exists on any host"
    if vm.host.state != "connected":
        return f"its host {vm.host.name} is {vm.host.get_state_display().lower()}"
    if vm.state not in CONSOLE_STATES:
        return f"the VM is {vm.get_state_display().lower()}; start it to see its screen"
    if not vm.graphics_type:
        return "the VM has no graphics device"
    if vm.graphics_type != "vnc":
        return f"the VM has only {vm.graphics_type.upper()} graphics; the in-browser console speaks VNC"
    return ""
