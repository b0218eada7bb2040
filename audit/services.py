"""Recording audit events. Services call these; nothing else writes AuditEvent rows.

``audit_record`` writes when the surrounding transaction commits (a change that is rolled back
did not happen); ``audit_refusal`` writes at once, since a refusal rolls back whatever it is in.
Secrets never go in: ``details`` is filtered by key name as a last line of defence.
"""

from __future__ import annotations

import logging
import uuid as uuidlib

from django.db import transaction

from core.net import client_ip

from .middleware import current_request
from .models import AuditEvent, Outcome

log = logging.getLogger(__name__)

_FROM_REQUEST = FROM_REQUEST = object()  # default of user= and ip=: the current request's
_SECRET_WORDS = ("password", "passwd", "secret", "token", "key")


def _scrub(details: dict | None) -> dict:
    clean = {}
    for key, value in (details or {}).items():
        if any(word in str(key).lower() for word in _SECRET_WORDS) and key not in ("ssh_key_path", "token_name"):
            continue
        if isinstance(value, dict):
            value = _scrub(value)
        elif isinstance(value, (list, tuple)):
            value = [_scrub(v) if isinstance(v, dict) else v for v in value]
        elif isinstance(value, uuidlib.UUID):
            value = str(value)
        clean[str(key)] = value
    return clean


def _who(user) -> tuple[object | None, str]:
    if user is None:
        return None, "system"
    if getattr(user, "is_authenticated", False) and getattr(user, "pk", None):
        return user, user.get_username()
    return None, "anonymous"


def _request_user():
    request = current_request.get()
    user = getattr(request, "user", None) if request is not None else None
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def _target_fields(target) -> dict:
    """Columns describing ``target``: what its ``audit_target()`` says (hosts, VMs, jobs...), or its
    pk and name for anything else."""
    if target is None:
        return {}
    describe = getattr(target, "audit_target", None)
    if describe is not None:
        return describe()
    name = getattr(target, "name", "") or str(target)
    return {
        "target_type": type(target).__name__.lower(),
        "target_id": str(getattr(target, "pk", "") or ""),
        "target_name": str(name)[:255],
    }


def _build(*, action, user, ip, outcome, message, target, details, **columns) -> AuditEvent:
    if user is _FROM_REQUEST:
        user = _request_user()
    if ip is _FROM_REQUEST:
        request = current_request.get()
        ip = client_ip(request) if request is not None else None
    who, username = _who(user)
    username = columns.pop("username", None) or username
    fields = {**_target_fields(target), **{k: v for k, v in columns.items() if v not in (None, "")}}
    return AuditEvent(
        user=who,
        username=username[:150],
        ip=ip,
        action=action[:64],
        outcome=outcome,
        message=(message or "")[:500],
        details=_scrub(details),
        **{k: (str(v)[:255] if k.endswith("_name") else v) for k, v in fields.items()},
    )


def audit_record(
    *,
    action: str,
    user=_FROM_REQUEST,
    ip=_FROM_REQUEST,
    outcome: str = Outcome.OK,
    message: str = "",
    target=None,
    details: dict | None = None,
    **columns,
) -> None:
    """Record that ``user`` did ``action`` (to ``target``), once the current transaction commits.

    ``user=None`` is Virtfleet itself; left out, it is the signed-in user of the current request.
    ``columns`` set AuditEvent fields directly (host_ref, host_name, vm_uuid, vm_name, target_*).
    """
    event = _build(
        action=action, user=user, ip=ip, outcome=outcome, message=message, target=target, details=details, **columns
    )

    def save() -> None:
        try:
            event.save()
        except Exception:  # the audit log must never break the operation it records
            log.exception("could not record audit event %s", action)

    transaction.on_commit(save)


def audit_refusal(
    *, user, action: str, target=None, message: str = "", details: dict | None = None, ip=_FROM_REQUEST, **columns
) -> None:
    """Record a refused attempt (no permission, wrong state) now: it rolls back what it was in."""
    event = _build(
        action=action,
        user=user,
        ip=ip,
        outcome=Outcome.REFUSED,
        message=message,
        target=target,
        details=details,
        **columns,
    )
    try:
        event.save()
    except Exception:
        log.exception("could not record refused %s", action)


def job_outcome(status: str) -> str:
    """The audit outcome of a job that ended in ``status``."""
    return {"succeeded": Outcome.OK, "cancelled": Outcome.CANCELLED}.get(status, Outcome.FAILED)


def record_access_refusal(sender, *, user, action: str, target=None, message: str = "", details=None, **extra) -> None:
    """Receiver of core.access.refused: every refusal anywhere lands in the audit log."""
    extra.pop("signal", None)
    audit_refusal(user=user, action=action, target=target, message=message, details=details,
                  ip=extra.pop("ip", FROM_REQUEST), **extra)  # fmt: skip
