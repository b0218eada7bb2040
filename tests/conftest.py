"""Fixtures shared by every test: libvirt test-driver hosts, users, logged-in clients."""

from __future__ import annotations

import os

import pytest

from tests.helpers import driver_uri


def pytest_collection_modifyitems(config, items):
    """End-to-end tests last: their session-wide processes (listener, worker) then never see the
    unit tests' hosts, and the unit tests run first and fail fast."""
    items.sort(key=lambda item: "/tests/e2e/" in str(item.fspath))


@pytest.fixture(autouse=True)
def _fresh_connections():
    """Each test starts with no cached libvirt connection (test-driver state is per connection)."""
    yield
    from hosts.connections import manager

    manager().close_all()


@pytest.fixture
def add_host(db, django_capture_on_commit_callbacks):
    """Register a test-driver host the way an operator does (validated, connected, synced)."""
    from hosts.services import host_add

    def add(name: str, node_file: str, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            host = host_add(name=name, uri=driver_uri(node_file), **kwargs)
        host.refresh_from_db()
        return host

    return add


@pytest.fixture
def host_a(add_host):
    return add_host("host-a", "host-a.xml")


@pytest.fixture
def host_b(add_host):
    return add_host("host-b", "host-b.xml")


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run on-commit callbacks (task enqueueing, pushes) inside a test transaction."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def admin_user(db, django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="pw-root-123")


@pytest.fixture
def make_user(db, django_user_model):
    """A user with a fleet-wide role (viewer, operator, admin) or none (accounts/roles.py)."""
    from django.contrib.auth.models import Group

    def make(username: str, role: str | None = None, *, password: str | None = None, **kwargs):
        # No password unless asked: hashing one takes a third of a second; force_login needs none.
        user = django_user_model.objects.create_user(username=username, password=password, **kwargs)
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def raw_libvirt():
    """The libvirt connection behind a Host, for tests that change a host 'behind Virtfleet's back'."""
    from hosts.connections import host_connection

    def get(host):
        return host_connection(host).raw

    return get


@pytest.fixture(scope="session", autouse=os.environ.get("VIRTFLEET_TEST_DB") == "postgres")
def _close_other_database_sessions(django_db_setup, django_db_blocker):
    """Threads some tests start (listeners, consumers) keep PostgreSQL sessions open; end them so
    the test database can be dropped at the end of the run."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
