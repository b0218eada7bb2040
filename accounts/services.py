"""Personal API tokens: create (shown once), list, revoke. Tokens carry their owner's permissions.

django-rest-knox stores only a SHA-512 hash of each token, its first characters (``token_key``,
how a person recognises it and how the API names it), its owner, creation and expiry.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from knox.models import AuthToken

from audit.services import audit_record
from core.errors import Forbidden, NotFound, ServiceError

from .models import TokenInfo

MAX_TOKENS_PER_USER = 50
LIFETIMES_DAYS = (7, 30, 90, 365)
MAX_DAYS = 365


def _clean_name(name) -> str:
    if not isinstance(name, str):
        raise ServiceError("The token name must be text.", field="name")
    name = " ".join(name.split())
    if not name:
        raise ServiceError('Give the token a name, e.g. what will use it ("backup script").', field="name")
    if len(name) > 100:
        raise ServiceError("Token names are at most 100 characters.", field="name")
    if not name.isprintable():
        raise ServiceError("The token name contains control characters.", field="name")
    return name


def _clean_days(days) -> int:
    if isinstance(days, bool):
        raise ServiceError("expires_in_days must be a whole number of days.", field="expires_in_days")
    try:
        number = int(days)
    except (TypeError, ValueError, OverflowError):
        raise ServiceError("expires_in_days must be a whole number of days.", field="expires_in_days") from None
    if isinstance(days, float) and days != number:
        raise ServiceError("expires_in_days must be a whole number of days.", field="expires_in_days")
    if not 1 <= number <= MAX_DAYS:
        raise ServiceError(f"A token lives between 1 and {MAX_DAYS} days.", field="expires_in_days")
    return number


def token_list(*, user) -> QuerySet[AuthToken]:
    """``user``'s tokens that have not expired, newest first, with their names."""
    return (
        AuthToken.objects.filter(user=user)
        .exclude(expiry__lt=timezone.now())
        .select_related("info")
        .order_by("-created", "token_key")
    )


def token_create(*, user, name, expires_in_days) -> tuple[AuthToken, str]:
    """Create a token for ``user``; returns (the token row, the token itself — shown this once)."""
    if user is None or not user.is_authenticated:
        raise Forbidden("Sign in to create API tokens.")
    name = _clean_name(name)
    days = _clean_days(expires_in_days)
    with transaction.atomic():
        if token_list(user=user).count() >= MAX_TOKENS_PER_USER:
            raise ServiceError(
                f"You already have {MAX_TOKENS_PER_USER} tokens; revoke one you no longer use first.", code="too_many"
            )
        instance, token = AuthToken.objects.create(user=user, expiry=timedelta(days=days))
        TokenInfo.objects.create(token=instance, name=name)
        audit_record(
            action="token.create",
            user=user,
            target_type="token",
            target_id=instance.token_key,
            target_name=name,
            details={"token_name": name, "expires": instance.expiry.isoformat()},
        )
    return instance, token


def token_get(*, user, token_id: str) -> AuthToken:
    found = token_list(user=user).filter(token_key=str(token_id)[:25]).first()
    if found is None:
        raise NotFound("You have no API token with that id.")
    return found


def token_revoke(*, user, token: AuthToken, by=None) -> None:
    """Revoke ``token`` at once (``by``: the administrator doing it, when not its owner)."""
    actor = by or user
    name = getattr(getattr(token, "info", None), "name", "")  # missing info: AttributeError too
    with transaction.atomic():
        audit_record(
            action="token.revoke",
            user=actor,
            target_type="token",
            target_id=token.token_key,
            target_name=name or token.token_key,
            details={"owner": token.user.get_username()},
        )
        token.delete()
