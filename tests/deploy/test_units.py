"""The files docs/deploy.md installs: systemd units systemd accepts, running what the Procfile runs,
and an environment file that is a working production configuration."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.bootstrap import ROOT

UNITS = ROOT / "deploy" / "systemd"
ENV_EXAMPLE = UNITS / "virtfleet.env.example"
# How docs/deploy.md instantiates the templates.
INSTANCES = {
    "virtfleet-web@.service": ["virtfleet-web@8001.service", "virtfleet-web@8002.service"],
    "virtfleet-worker@.service": [
        "virtfleet-worker@lifecycle.service",
        "virtfleet-worker@migration.service",
        "virtfleet-worker@inventory.service",
    ],
    "virtfleet-listener@.service": ["virtfleet-listener@1.service"],
}


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as systemd reads it: sections of keys, a key may repeat."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def services() -> dict[str, dict]:
    return {p.name: parse_unit(p) for p in sorted(UNITS.glob("*.service"))}


def seconds(value: str) -> float:
    """systemd time spans as used here: 180, 90s, 30min."""
    number, unit = re.fullmatch(r"(\d+)\s*(s|min|)", value).groups()
    return int(number) * (60 if unit == "min" else 1)


def installed_units(dest: Path) -> list[str]:
    """The units as docs/deploy.md installs them, with /opt/virtfleet and its virtualenv being this
    checkout and the virtualenv running the tests (so systemd can check that each program exists)."""
    for src in UNITS.rglob("*"):
        if src.is_file() and src.suffix in (".service", ".target", ".conf"):
            target = dest / src.relative_to(UNITS)
            target.parent.mkdir(parents=True, exist_ok=True)
            text = src.read_text().replace("/opt/virtfleet/.venv", sys.prefix).replace("/opt/virtfleet", str(ROOT))
            target.write_text(text)
    names = []
    for p in sorted(UNITS.glob("*.service")) + sorted(UNITS.glob("*.target")):
        names += INSTANCES.get(p.name, [p.name])
    return names


def test_systemd_accepts_every_unit_and_finds_every_program(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is missing: run ./virtfleet setup (apt-get install systemd)")
    names = installed_units(tmp_path)
    assert "virtfleet-worker@migration.service" in names and "virtfleet.target" in names
    result = subprocess.run(
        [exe, "verify", "--man=no", *names],
        cwd=tmp_path,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify only warns (exit 0) about unknown keys or bad values: any output is a finding
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not findings, f"systemd-analyze verify {' '.join(names)}:\n{findings}"


def program(argv: list[str]) -> tuple[str, ...]:
    """What a command line runs, whatever the paths: ('daphne',), ('celery', 'worker'), ('manage.py', 'listen')."""
    name = os.path.basename(argv[0])
    if name == "daphne":
        return ("daphne", argv[-1])
    if name == "celery":
        return ("celery", next(a for a in argv[1:] if a in ("worker", "beat")))
    if name.startswith("python"):
        return ("manage.py", argv[argv.index("manage.py") + 1])
    return (name,)


def test_every_procfile_process_but_redis_has_a_unit_with_the_same_options():
    units = {}
    for name, unit in services().items():
        (exec_start,) = unit["Service"]["ExecStart"]
        argv = shlex.split(exec_start)
        units[program(argv)] = (name, argv)
    for line in (ROOT / "Procfile").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        process, _, command = line.partition(":")
        argv = shlex.split(command)
        if process == "redis":
            continue  # Redis is a service of its own in a deployment (docs/deploy.md)
        assert program(argv) in units, f"no unit in deploy/systemd runs the Procfile's {process}: {command}"
        unit_name, unit_argv = units[program(argv)]
        missing = {a for a in argv if a.startswith("-")} - {a for a in unit_argv if a.startswith("-")}
        assert not missing, f"{unit_name} lacks {sorted(missing)} that the Procfile's {process} uses"
        if "--pool" in argv:
            assert unit_argv[unit_argv.index("--pool") + 1] == argv[argv.index("--pool") + 1]


def test_every_unit_runs_as_virtfleet_restarts_on_failure_and_is_hardened():
    for name, unit in services().items():
        service, install = unit["Service"], unit["Install"]
        assert service["User"] == ["virtfleet"], name
        assert "/etc/virtfleet/virtfleet.env" in service["EnvironmentFile"], name
        assert service["Restart"] == ["on-failure"], name
        for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes")):
            assert service[key] == [value], f"{name}: {key}"
        assert unit["Unit"]["PartOf"] == ["virtfleet.target"] and install["WantedBy"] == ["virtfleet.target"], name
    assert parse_unit(UNITS / "virtfleet.target")["Install"]["WantedBy"] == ["multi-user.target"]


def test_a_stopping_worker_may_finish_its_longest_job():
    worker = parse_unit(UNITS / "virtfleet-worker@.service")["Service"]
    # warm shutdown: SIGTERM to Celery alone (not to the ssh of running jobs), then wait
    assert worker["KillSignal"] == ["SIGTERM"] and worker["KillMode"] == ["mixed"]
    assert seconds(worker["TimeoutStopSec"][0]) > settings.VIRTFLEET["SHUTDOWN_TIMEOUT"]
    migration = parse_unit(UNITS / "virtfleet-worker@migration.service.d" / "stop-timeout.conf")["Service"]
    assert seconds(migration["TimeoutStopSec"][0]) >= 30 * 60


def test_the_environment_file_example_is_a_working_production_configuration(tmp_path):
    example = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    for key in (
        "SECRET_KEY",
        "VIRTFLEET_SECRETS_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
    ):
        assert example.get(key), f"{ENV_EXAMPLE.name} must set {key}"
    assert example["VIRTFLEET_BEHIND_PROXY"] == "1" and example["DEBUG"] == "0"
    # Django's own deployment check, in a clean environment holding only the example (no
    # VIRTFLEET_LOCAL: a missing SECRET_KEY or a bad number would stop it).
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **example, "VIRTFLEET_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # What is left to nginx (deploy/nginx/virtfleet.conf): the HSTS header and http -> https.
    assert set(re.findall(r"\(security\.(W\d+)\)", output)) <= {"W004", "W008"}, output
