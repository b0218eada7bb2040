"""Validation of libvirt connection URIs before anything tries to open them.

libvirt's own parser accepts almost anything and fails late with obscure messages; here a URI is
checked for a known driver, an optional known transport, a sane host and port and known query
parameters, and every refusal says what is wrong and what a valid URI looks like.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import InvalidURI

DRIVERS = {
    "qemu", "test", "xen", "libxl", "lxc", "bhyve", "ch", "vz", "openvz", "vbox",
    "hyperv", "esx", "gsx", "vpx", "vmwareplayer", "vmwarews", "vmwarefusion",
}  # fmt: skip
TRANSPORTS = {"tcp", "tls", "ssh", "libssh", "libssh2", "unix", "ext"}
REMOTE_TRANSPORTS = {"tcp", "tls", "ssh", "libssh", "libssh2"}
DEFAULT_PORTS = {"tcp": 16509, "tls": 16514, "ssh": 22, "libssh": 22, "libssh2": 22}
QUERY_PARAMS = {
    "name", "command", "socket", "netcat", "keyfile", "no_verify", "no_tty", "pkipath",
    "known_hosts", "known_hosts_verify", "sshauth", "proxy", "mode", "tls_priority",
    "no_sanity", "transport",
}  # fmt: skip
EXAMPLES = "qemu+ssh://root@host.example.com/system, qemu+tls://10.0.0.5/system, qemu:///system"
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$")
MAX_LENGTH = 1024


@dataclass(frozen=True)
class LibvirtURI:
    """A validated libvirt URI, split into the parts Virtfleet cares about."""

    uri: str
    driver: str
    transport: str | None
    user: str | None
    host: str | None
    port: int | None
    path: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def is_remote(self) -> bool:
        """True when the connection goes over the network (a host is named)."""
        return self.host is not None and (self.transport in REMOTE_TRANSPORTS or self.transport is None)

    @property
    def effective_port(self) -> int | None:
        if not self.is_remote:
            return None
        return self.port or DEFAULT_PORTS.get(self.transport or "tls")

    @property
    def is_ssh(self) -> bool:
        return self.transport in {"ssh", "libssh", "libssh2"}

    def with_params(self, **extra: str) -> str:
        """The URI with query parameters added (existing ones win)."""
        parts = urlsplit(self.uri)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        for key, value in extra.items():
            params.setdefault(key, value)
        return urlunsplit(parts._replace(query=urlencode(params, safe="/:,")))


def _bad(reason: str) -> InvalidURI:
    return InvalidURI(reason, hint=f"a libvirt URI looks like {EXAMPLES}")


def _check_text(uri: str) -> str:
    if not isinstance(uri, str) or not uri.strip():
        raise _bad("the URI is empty")
    uri = uri.strip()
    if len(uri) > MAX_LENGTH:
        raise _bad(f"the URI is longer than {MAX_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in uri):
        raise _bad("the URI contains spaces or control characters")
    if "://" not in uri:
        raise _bad(f"{uri!r} has no scheme (driver[+transport]://)")
    return uri


def _check_scheme(scheme: str) -> tuple[str, str | None]:
    driver, _, transport = scheme.lower().partition("+")
    if driver not in DRIVERS:
        raise _bad(f"unknown hypervisor driver {driver!r}; known drivers: {', '.join(sorted(DRIVERS))}")
    if transport and transport not in TRANSPORTS:
        raise _bad(
            f"unknown transport {transport!r}; use one of {', '.join(sorted(TRANSPORTS))}, "
            "or none for a local connection"
        )
    return driver, transport or None


def _check_user(parts) -> str | None:
    if parts.password is not None:
        raise _bad("do not put a password in the URI; give it as the host's SASL password instead")
    user = parts.username or None
    if user is not None and not _USER.match(user):
        raise _bad(f"the user name {user!r} contains characters that are not allowed")
    return user


def _check_host(host: str | None, port: int | None, transport: str | None) -> None:
    if host is not None:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not _HOSTNAME.match(host):
                raise _bad(f"{host!r} is not a valid host name or IP address") from None
    if port is not None and not (1 <= port <= 65535):
        raise _bad(f"port {port} is out of range (1-65535)")
    if port is not None and host is None:
        raise _bad("a port is given but no host")
    if transport == "unix" and host is not None:
        raise _bad("the unix transport is local: leave the host out (qemu+unix:///system)")
    if transport in REMOTE_TRANSPORTS and host is None:
        raise _bad(f"the {transport} transport needs a host (e.g. qemu+{transport}://host/system)")


def _check_path(driver: str, path: str) -> None:
    if driver == "qemu" and path not in ("/system", "/session", "/embed"):
        raise _bad(f"a qemu URI ends in /system or /session, not {path!r}")
    if driver == "test" and path != "/default" and not path.endswith(".xml"):
        raise _bad("a test URI is test:///default or test:///<absolute path to a .xml file>")


def _check_query(parts) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in QUERY_PARAMS:
            raise _bad(f"unknown URI parameter {key!r}; known: {', '.join(sorted(QUERY_PARAMS))}")
        params[key] = value
    if parts.fragment:
        raise _bad("a libvirt URI has no #fragment")
    return params


def parse_uri(uri: str) -> LibvirtURI:
    """Parse and validate ``uri``; raise InvalidURI saying what is wrong."""
    uri = _check_text(uri)
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise _bad(f"{uri!r} is not a valid URI ({exc})") from None
    driver, transport = _check_scheme(parts.scheme)
    user = _check_user(parts)
    host = parts.hostname or None
    _check_host(host, port, transport)
    path = parts.path or "/"
    _check_path(driver, path)
    params = _check_query(parts)
    return LibvirtURI(
        uri=uri, driver=driver, transport=transport, user=user, host=host, port=port, path=path, params=params
    )
