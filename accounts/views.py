"""The "API tokens" page (create, list, revoke your own) and the sign-in page's lockout answer."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from core.errors import NotFound, ServiceError

from . import services


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. “backup script on ops-1”.")
    expires_in_days = forms.TypedChoiceField(
        label="Expires in",
        coerce=int,
        choices=[(d, f"{d} days") for d in services.LIFETIMES_DAYS],
        initial=90,
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    """Your tokens; a new one is shown on the answer to its POST only (never stored, never redirected)."""
    form = TokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            instance, token = services.token_create(user=request.user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            created = {"token": token, "name": instance.info.name, "expiry": instance.expiry}
            form = TokenForm()
    return render(
        request,
        "accounts/tokens.html",
        {"form": form, "created": created, "tokens": services.token_list(user=request.user)},
        status=201 if created else 200,
    )


@login_required
@require_POST
def token_revoke(request, token_id: str):
    try:
        token = services.token_get(user=request.user, token_id=token_id)
    except NotFound as exc:
        messages.error(request, exc.message)
        return redirect("accounts:tokens")
    services.token_revoke(user=request.user, token=token)
    messages.success(request, f"Token {token.token_key}… revoked: it no longer works.")
    return redirect("accounts:tokens")


def locked_out(request, original_response=None, credentials=None):
    """django-axes: too many failed sign-ins for this user name from this address (429)."""
    from axes.helpers import get_cool_off

    cool_off = get_cool_off(request)
    minutes = max(1, round(cool_off.total_seconds() / 60)) if cool_off else None
    wait = f"{minutes} minute{'s' if minutes != 1 else ''}" if minutes else "a while"
    form = AuthenticationForm(request, data=None, initial={"username": (credentials or {}).get("username", "")})
    return render(
        request,
        "registration/login.html",
        {"form": form, "locked_out": f"Too many failed sign-ins. Wait {wait}, then try again.", "next": ""},
        status=429,
    )
