"""Host credentials at rest: encrypted with VIRTFLEET_SECRETS_KEY, never shown back, never logged."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.db import connection

from core import crypto
from hosts.models import Host
from tests.bootstrap import ROOT


def raw_password(host) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sasl_password FROM hosts_host WHERE id = %s", [host.pk])
        return cursor.fetchone()[0]


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture
def secret_host(host_a):
    Host.objects.filter(pk=host_a.pk).update(sasl_password="s3cret-Sasl-pw")
    return Host.objects.get(pk=host_a.pk)


def test_the_password_is_stored_encrypted_and_read_back_in_clear(secret_host):
    assert secret_host.sasl_password == "s3cret-Sasl-pw"
    stored = raw_password(secret_host)
    assert "s3cret" not in stored and stored.startswith("gAAAAA")  # a Fernet token
    assert raw_password(secret_host) != crypto.encrypt("s3cret-Sasl-pw")  # a fresh IV every time


def test_an_empty_password_stays_empty(host_a):
    assert raw_password(host_a) == "" and host_a.sasl_password == ""


def test_the_password_is_never_shown_back(admin_client, secret_host, caplog):
    for url in ("/api/hosts/", f"/api/hosts/{secret_host.pk}/", f"/hosts/{secret_host.pk}/", f"/hosts/{secret_host.pk}/edit/",
                "/hosts/", "/", f"/admin/hosts/host/{secret_host.pk}/change/", "/admin/hosts/host/"):  # fmt: skip
        body = admin_client.get(url).content.decode()
        assert "s3cret" not in body and raw_password(secret_host) not in body, url
    assert admin_client.get(f"/api/hosts/{secret_host.pk}/").json()["has_sasl_password"] is True
    assert "s3cret" not in caplog.text


def test_changing_the_password_is_audited_without_it(admin_client, host_a, on_commit):
    from audit.models import AuditEvent

    with on_commit():
        admin_client.patch(
            f"/api/hosts/{host_a.pk}/",
            {"sasl_username": "", "sasl_password": "n3w-Secret"},
            content_type="application/json",
        )
    event = AuditEvent.objects.get(action="host.update")
    assert event.details["sasl_credential"] == "changed" and "n3w-Secret" not in str(event.details) + event.message
    assert Host.objects.get(pk=host_a.pk).sasl_password == "n3w-Secret"


def test_a_wrong_key_fails_loudly_saying_which_setting(secret_host, settings):
    settings.VIRTFLEET_SECRETS_KEYS = [new_key()]
    with pytest.raises(crypto.SecretsKeyMismatch) as err:
        Host.objects.get(pk=secret_host.pk)
    assert "Host.sasl_password cannot be decrypted with VIRTFLEET_SECRETS_KEY" in str(err.value)


def test_keys_rotate_new_key_first_then_rotate_secrets(secret_host, settings):
    old = settings.VIRTFLEET_SECRETS_KEYS[0]
    new = new_key()
    settings.VIRTFLEET_SECRETS_KEYS = [new, old]
    assert Host.objects.get(pk=secret_host.pk).sasl_password == "s3cret-Sasl-pw"  # old data still reads
    call_command("rotate_secrets", stdout=open(os.devnull, "w"))  # noqa: SIM115
    settings.VIRTFLEET_SECRETS_KEYS = [new]  # the old key can go now
    assert Host.objects.get(pk=secret_host.pk).sasl_password == "s3cret-Sasl-pw"


def test_the_migration_encrypts_passwords_stored_before_it(secret_host):
    """hosts 0003 encrypts what older versions stored in clear (run here on the state before it)."""
    import importlib

    from django.db.migrations.loader import MigrationLoader

    migration = importlib.import_module("hosts.migrations.0003_permissions_encrypted_credentials")
    old_apps = MigrationLoader(connection).project_state(("hosts", "0002_migration")).apps
    with connection.cursor() as cursor:
        cursor.execute("UPDATE hosts_host SET sasl_password = %s WHERE id = %s", ["plain-Old-pw", secret_host.pk])
    migration.encrypt_existing(old_apps, None)
    assert raw_password(secret_host).startswith("gAAAAA")
    assert Host.objects.get(pk=secret_host.pk).sasl_password == "plain-Old-pw"
    migration.decrypt_existing(old_apps, None)
    assert raw_password(secret_host) == "plain-Old-pw"


def settings_in(env: dict) -> subprocess.CompletedProcess:
    """Import the settings in a fresh process with ``env`` (as a production start would)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTFLEET_", "DEBUG", "SECRET_KEY"))}
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'dashboard.settings');"
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE,"
        " s.SECURE_HSTS_SECONDS, bool(getattr(s, 'SECURE_PROXY_SSL_HEADER', None)), len(s.VIRTFLEET_SECRETS_KEYS))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def test_production_refuses_to_start_without_a_secrets_key(tmp_path):
    result = settings_in({"SECRET_KEY": "x" * 50, "VIRTFLEET_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "VIRTFLEET_SECRETS_KEY is not set" in result.stderr
    bad = settings_in({"SECRET_KEY": "x" * 50, "VIRTFLEET_VAR_DIR": str(tmp_path), "VIRTFLEET_SECRETS_KEY": "short"})
    assert "key 1 is not a Fernet key" in bad.stderr


def test_production_cookies_are_secure_and_hsts_is_opt_in(tmp_path):
    env = {
        "SECRET_KEY": "x" * 50,
        "VIRTFLEET_VAR_DIR": str(tmp_path),
        "VIRTFLEET_SECRETS_KEY": f"{new_key()},{new_key()}",
    }
    result = settings_in(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "Lax", "0", "False", "2"]
    behind = settings_in({**env, "VIRTFLEET_BEHIND_PROXY": "1", "VIRTFLEET_HSTS_SECONDS": "31536000"})
    assert behind.stdout.split() == ["True", "True", "True", "Lax", "31536000", "True", "2"]
    debug = settings_in({**env, "DEBUG": "1"})
    assert debug.stdout.split()[:2] == ["False", "False"]  # plain http in development


def test_local_mode_makes_a_key_once_and_keeps_it(tmp_path):
    env = {"VIRTFLEET_LOCAL": "1", "VIRTFLEET_VAR_DIR": str(tmp_path)}
    assert settings_in(env).returncode == 0
    key = (tmp_path / "secrets_key").read_text()
    assert settings_in(env).returncode == 0 and (tmp_path / "secrets_key").read_text() == key
    assert oct((tmp_path / "secrets_key").stat().st_mode & 0o777) == "0o600"


def test_manage_py_names_a_missing_setting_without_a_traceback(tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTFLEET_", "DEBUG", "SECRET_KEY"))}
    for env, missing in (({}, "SECRET_KEY is not set"), ({"SECRET_KEY": "x" * 50}, "VIRTFLEET_SECRETS_KEY is not set")):
        result = subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=ROOT,
            env={**base, **env, "VIRTFLEET_VAR_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert result.stderr.startswith(f"Virtfleet is not configured: {missing}"), result.stderr
        assert "Traceback" not in result.stderr
