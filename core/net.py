"""Where a request comes from: the one answer for audit records, job records and sign-in throttling.

Behind Virtfleet's own reverse proxy (VIRTFLEET_BEHIND_PROXY=1) the client is the address that
proxy appended to X-Forwarded-For (VIRTFLEET_PROXY_COUNT proxies from the end); anywhere else the
header is ignored, since any client can send it, and the peer address is the answer.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def valid_ip(value: str | None) -> str | None:
    """``value`` as a normalised IP address, or None when it is not one."""
    try:
        return str(ipaddress.ip_address((value or "").strip())) if value else None
    except ValueError:
        return None


def forwarded_client(forwarded_for: str, peer: str | None) -> str | None:
    """The client address from an X-Forwarded-For value our proxies appended to (else the peer)."""
    if getattr(settings, "BEHIND_PROXY", False) and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        count = int(getattr(settings, "PROXY_COUNT", 1))
        if len(hops) >= count:
            return valid_ip(hops[-count])
    return valid_ip(peer)


def client_ip(request) -> str | None:
    """The address of the client that sent ``request`` (a Django HttpRequest)."""
    meta = getattr(request, "META", {})
    return forwarded_client(meta.get("HTTP_X_FORWARDED_FOR", ""), meta.get("REMOTE_ADDR"))
