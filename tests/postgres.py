"""A throwaway PostgreSQL cluster for end-to-end tests: Debian's postgresql-15 binaries, run as the
``postgres`` system user the package creates, in a temporary directory, on a free loopback port.

Set up the way docs/deploy.md tells an operator to: a login role with a password and a database it
owns, reached over TCP with scram-sha-256. Stopped with ``pg_ctl stop`` and its directory removed.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresMissing(RuntimeError):
    pass


def _require_binaries() -> pwd.struct_passwd:
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / name).exists()]
    if missing:
        raise PostgresMissing(
            f"PostgreSQL 15 is not installed ({', '.join(missing)} missing from {PG_BIN}): "
            "run ./virtfleet setup (apt-get install postgresql)"
        )
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresMissing(
            "the postgres system user does not exist: run ./virtfleet setup (apt-get install postgresql)"
        ) from None


@dataclass
class PostgresCluster:
    port: int
    user: str = "virtfleet"
    database: str = "virtfleet"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    base: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "run"

    @property
    def log_file(self) -> Path:
        return self.base / "postgresql.log"

    @property
    def url(self) -> str:
        return f"postgres://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def _as_postgres(self, argv: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess:
        # PostgreSQL refuses to run as root; the Debian package's system user runs it.
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, timeout=timeout, cwd="/"
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
        return result

    def start(self) -> PostgresCluster:
        account = _require_binaries()
        self.base = Path(tempfile.mkdtemp(prefix="virtfleet-pg-"))
        try:
            self._init_and_start(account)
        except BaseException:
            self.stop()
            raise
        return self

    def _init_and_start(self, account: pwd.struct_passwd) -> None:
        self.socket_dir.mkdir()
        for path in (self.base, self.socket_dir):
            os.chown(path, account.pw_uid, account.pw_gid)
        self._as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
             "--auth-local=peer", "--auth-host=scram-sha-256"]
        )  # fmt: skip
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                # a scratch cluster: durability buys nothing here and costs seconds of fsync
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        try:
            self._as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60", "start"],
                timeout=90,
            )
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\nserver log:\n{self.log()}") from None
        # What docs/deploy.md has the operator do: a login role and a database it owns.
        self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
        self.psql(f"CREATE DATABASE {self.database} OWNER {self.user}")

    def psql(self, sql: str) -> str:
        """Run SQL as the superuser over the cluster's private socket (as an operator would set it up)."""
        return self._as_postgres(
            [str(PG_BIN / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres", "-d",
             "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", sql]
        ).stdout.strip()  # fmt: skip

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """pg_ctl stop (fast: disconnects clients), wait for the server to exit, remove its files."""
        if self.base is None:
            return
        try:
            pid = self.postmaster_pid()
            if pid is not None:
                self._as_postgres(
                    [str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
                    timeout=60,
                )
                deadline = time.monotonic() + 10
                while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                    time.sleep(0.05)  # pg_ctl returns once the pid file is gone; the process follows
                assert not os.path.exists(f"/proc/{pid}"), f"PostgreSQL (pid {pid}) did not exit"
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
