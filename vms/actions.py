"""Which operations are allowed on a VM in which state — one table for services, buttons and API.

Each Action says when it is allowed (from the VM row, which mirrors libvirt), what state means
"already done" (the job then succeeds without touching the VM), and how the UI presents it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .models import VM, JobKind

RUNNING = {"running"}
ACTIVE = {"running", "paused", "shutting_down", "pmsuspended", "crashed"}
STOPPED = {"shutoff", "crashed"}


@dataclass(frozen=True)
class Action:
    kind: str
    label: str
    allowed_states: frozenset[str]
    done_states: frozenset[str] = frozenset()  # already there: succeed without acting
    needs_persistent: bool = False
    danger: bool = False
    confirm: str = ""  # question the UI asks first ("" = no confirmation)
    starts_vm: bool = False  # refused on a host in maintenance
    check: Callable[[VM], str] | None = None  # further check: returns a refusal reason or ""
    help: str = ""


def _autostart_off_first(vm: VM) -> str:
    return "" if not vm.autostart else "autostart is already on"


def _autostart_on_first(vm: VM) -> str:
    return "" if vm.autostart else "autostart is already off"


ACTIONS: dict[str, Action] = {
    a.kind: a
    for a in [
        Action(
            JobKind.START,
            "Start",
            frozenset(STOPPED),
            done_states=frozenset({"running"}),
            needs_persistent=True,
            starts_vm=True,
            help="Boot the VM, or restore it if its state was saved.",
        ),
        Action(
            JobKind.SHUTDOWN,
            "Shut down",
            frozenset(RUNNING),
            done_states=frozenset({"shutoff"}),
            help="Press the ACPI power button and wait for the guest to power off.",
        ),
        Action(
            JobKind.FORCE_OFF,
            "Force off",
            frozenset(ACTIVE),
            done_states=frozenset({"shutoff"}),
            danger=True,
            confirm="Power the VM off at once? Unsaved data in the guest is lost.",
            help="Pull the plug.",
        ),
        Action(
            JobKind.REBOOT,
            "Reboot",
            frozenset(RUNNING),
            help="Ask the guest to reboot (ACPI).",
        ),
        Action(
            JobKind.RESET,
            "Reset",
            frozenset({"running", "paused"}),
            danger=True,
            confirm="Reset the VM like a hardware reset button? Unsaved data in the guest is lost.",
            help="Hard reset, without asking the guest.",
        ),
        Action(
            JobKind.SUSPEND,
            "Suspend",
            frozenset(RUNNING),
            done_states=frozenset({"paused"}),
            help="Pause the vCPUs; memory stays on the host.",
        ),
        Action(
            JobKind.RESUME,
            "Resume",
            frozenset({"paused"}),
            done_states=frozenset({"running"}),
            help="Let a paused VM run again.",
        ),
        Action(
            JobKind.SAVE,
            "Save state",
            frozenset({"running", "paused"}),
            needs_persistent=True,
            help="Write memory to the host and stop; the next start resumes where it was.",
        ),
        Action(
            JobKind.AUTOSTART_ON,
            "Autostart on",
            frozenset(ACTIVE | STOPPED | {"unknown"}),
            needs_persistent=True,
            check=_autostart_off_first,
            help="Start with the host.",
        ),
        Action(
            JobKind.AUTOSTART_OFF,
            "Autostart off",
            frozenset(ACTIVE | STOPPED | {"unknown"}),
            needs_persistent=True,
            check=_autostart_on_first,
        ),
        Action(
            JobKind.DELETE,
            "Delete",
            frozenset(STOPPED | ACTIVE | {"unknown"}),
            danger=True,
            confirm="Delete this VM's definition from its host?",
            help="Undefine the VM (optionally with its disk volumes).",
        ),
    ]
}
LIFECYCLE_KINDS = [kind for kind in ACTIONS]


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
    if action.starts_vm and host.in_maintenance:
        return f"its host {host.name} is in maintenance; migrate the VM or take the host out of maintenance"
    if action.needs_persistent and not vm.persistent:
        return "the VM is transient (not defined on its host)"
    if kind == JobKind.DELETE and vm.state in ACTIVE and not params.get("force"):
        return "it is running; shut it down first, or delete with force to power it off"
    if vm.state not in action.allowed_states:
        if vm.state in action.done_states:
            return f"it is already {vm.get_state_display().lower()}"
        return f"not possible while the VM is {vm.get_state_display().lower()}"
    if action.check:
        return action.check(vm)
    return ""


def can(vm: VM, kind: str) -> bool:
    return not refusal(vm, kind)


def available(vm: VM) -> list[tuple[Action, str]]:
    """Every action with its refusal reason ("" = allowed), in display order, for buttons."""
    return [(action, refusal(vm, kind)) for kind, action in ACTIONS.items()]
