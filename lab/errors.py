"""Exceptions raised by the lab; every message says what to do next."""

from __future__ import annotations

from typing import Any


class LabError(Exception):
    """Base class: the lab could not do what was asked."""


class PreflightError(LabError):
    """The machine is missing something the lab needs (root, programs, ports)."""


class PortInUse(PreflightError):
    """A port the lab wants to listen on is already taken."""

    def __init__(self, port: int, purpose: str) -> None:
        self.port = port
        self.purpose = purpose
        super().__init__(
            f"port {port} on 127.0.0.1 ({purpose}) is already in use. Stop whatever "
            f"listens there (`ss -ltnp 'sport = :{port}'`) or choose another range with "
            f"--port-base / VIRTFLEET_LAB_PORT_BASE."
        )


class ImageError(LabError):
    """Building the guest kernel/initramfs failed."""


class LabAlreadyRunning(LabError):
    """`up` was called while a lab recorded in the same base dir is still alive."""

    def __init__(self, state: Any) -> None:  # a lab.state.LabState (which imports this module)
        self.state = state
        super().__init__(
            f"a lab is already running in {state.base_dir} ({len(state.hosts)} hosts); run `python -m lab down` first"
        )
