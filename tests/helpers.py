"""Plain helpers for tests (not fixtures)."""

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def driver_uri(name: str) -> str:
    """URI of a libvirt test-driver node file in tests/data (each open is a private copy)."""
    return f"test:///{DATA / name}"


def domain_xml(name: str, uuid: str, *, memory_mib: int = 256, vcpus: int = 1) -> str:
    """A minimal test-driver domain definition."""
    return (
        f"<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>"
        f"<memory unit='MiB'>{memory_mib}</memory><vcpu>{vcpus}</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os>"
        "<devices><graphics type='vnc' autoport='yes' listen='127.0.0.1'/></devices></domain>"
    )


def database_env() -> dict[str, str]:
    """Environment for a subprocess (a proxy, a worker) to use the database this test run uses: the
    SQLite file, or the PostgreSQL test database (VIRTFLEET_TEST_DB=postgres)."""
    from django.db import connection

    db = connection.settings_dict
    if "postgresql" in db["ENGINE"]:
        return {"DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    return {"VIRTFLEET_SQLITE_PATH": str(db["NAME"])}
