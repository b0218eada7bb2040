"""The few exceptions the rest of Virtfleet sees instead of libvirt.libvirtError.

Each carries libvirt's own message (``.message``) and, where one helps, a plain-words hint on what
to do (``.hint``). ``str(exc)`` is what a user may be shown.
"""

from __future__ import annotations

import libvirt


class VirtError(Exception):
    """Base of every error raised by virt/."""

    transient = False

    def __init__(self, message: str, *, hint: str = "", code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class InvalidURI(VirtError):
    """The libvirt URI is malformed or names something Virtfleet cannot use."""


class HostUnreachable(VirtError):
    """The host's libvirt cannot be reached (network, daemon down, connection lost). Worth a retry."""

    transient = True


class AuthenticationFailed(HostUnreachable):
    """The host answered but refused our credentials. Retrying will not help."""

    transient = False


class NotFound(VirtError):
    """The host has no such object (any more)."""


class DomainNotFound(NotFound):
    """The host has no domain with that UUID (any more)."""


class PoolNotFound(NotFound):
    """The host has no storage pool of that name (any more)."""


class VolumeNotFound(NotFound):
    """The pool has no volume of that name (any more)."""


class NetworkNotFound(NotFound):
    """The host has no virtual network of that name (any more)."""


class OperationUnsupported(VirtError):
    """The host's hypervisor driver does not implement this operation."""


class OperationInvalid(VirtError):
    """The operation is not valid in the domain's current state (e.g. suspend a shut-off VM)."""


class OperationAborted(VirtError):
    """A long operation (migration, save) was aborted on request."""


class OperationTimeout(VirtError):
    """libvirt or the guest did not finish in time."""

    transient = True


class OperationFailed(VirtError):
    """Any other libvirt failure, with libvirt's message."""


_UNREACHABLE = {libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_ERR_RPC}
# System errors count as "unreachable" only when they come from the transport, not from, say, a
# missing disk image on the host.
_TRANSPORT_DOMAINS = {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE}
_UNSUPPORTED = {
    libvirt.VIR_ERR_NO_SUPPORT,
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
}
_NOT_FOUND = {libvirt.VIR_ERR_NO_DOMAIN: DomainNotFound, libvirt.VIR_ERR_NO_STORAGE_POOL: PoolNotFound,
              libvirt.VIR_ERR_NO_STORAGE_VOL: VolumeNotFound, libvirt.VIR_ERR_NO_NETWORK: NetworkNotFound}  # fmt: skip
_INVALID = {libvirt.VIR_ERR_OPERATION_INVALID}

# Common libvirt messages and what an operator should do about them.
_HINTS = [
    ("Connection refused", "is libvirtd running and listening on that address and port?"),
    ("No route to host", "check the host's address and the network between Virtfleet and it."),
    ("Name or service not known", "the host name does not resolve; check it or use an IP address."),
    ("Permission denied", "the credentials were refused; check the SSH key or SASL user."),
    ("Host key verification failed", "add the host's SSH key to known_hosts (or set no_verify=1)."),
    ("authentication failed", "check the SASL user name and password."),
    ("Cannot recv data", "the connection to libvirtd dropped; the host may be restarting."),
    ("End of file while reading data", "the remote side closed the connection; is libvirtd running?"),
    ("no connection driver available", "that hypervisor driver is not installed on the host."),
    ("Failed to connect socket", "libvirtd is not running, or its socket is elsewhere."),
]


def hint_for(message: str) -> str:
    for needle, hint in _HINTS:
        if needle.lower() in message.lower():
            return hint
    return ""


def translate(exc: libvirt.libvirtError, *, context: str = "") -> VirtError:
    """Map a libvirtError to one of our exceptions, keeping libvirt's message."""
    code = exc.get_error_code()
    domain = exc.get_error_domain()
    message = (exc.get_error_message() or str(exc) or "unknown libvirt error").strip()
    if context:
        message = f"{context}: {message}"
    hint = hint_for(message)
    if code == libvirt.VIR_ERR_AUTH_FAILED or code == libvirt.VIR_ERR_AUTH_CANCELLED:
        return AuthenticationFailed(message, hint=hint or "check the host's credentials.", code=code)
    if code in _NOT_FOUND:
        return _NOT_FOUND[code](message, code=code)
    if code in _UNSUPPORTED:
        return OperationUnsupported(message, hint=hint, code=code)
    if code in _INVALID:
        return OperationInvalid(message, hint=hint, code=code)
    if code == libvirt.VIR_ERR_OPERATION_ABORTED:
        return OperationAborted(message, code=code)
    if code in (libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_ERR_AGENT_UNRESPONSIVE):
        return OperationTimeout(message, hint=hint, code=code)
    if code in _UNREACHABLE or domain in _TRANSPORT_DOMAINS:
        return HostUnreachable(message, hint=hint, code=code)
    return OperationFailed(message, hint=hint, code=code)
