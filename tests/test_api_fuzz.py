"""Generated requests against the live OpenAPI schema (schemathesis + hypothesis): whatever comes in,
the API answers with a status below 500 and, when it refuses, with a JSON body saying why.

Each run tries a bounded number of cases per operation (VIRTFLEET_FUZZ_EXAMPLES, default 12, in both
schema-valid and schema-breaking modes) so it stays fast enough for CI; a bigger exploration is the
same test with a bigger number (see the closing note of the security work for the counts tried).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from virt import InvalidURI, parse_uri

EXAMPLES = int(os.environ.get("VIRTFLEET_FUZZ_EXAMPLES", "12"))
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
LOOPBACK_URI = "qemu+tcp://127.0.0.1:9/system"  # port 9: refused at once, on this machine


def _remote_host(uri: str) -> str | None:
    try:
        return parse_uri(uri).host
    except InvalidURI:
        return None  # refused before any connection


def keep_on_this_machine(case) -> None:
    """Generated libvirt URIs must not send the host probe anywhere but loopback (the rules of
    this workplace: no traffic to generated addresses). Malformed URIs stay as generated."""
    if not isinstance(case.body, dict):
        return
    for key in ("uri", "peer_uri"):
        value = case.body.get(key)
        if isinstance(value, str) and _remote_host(value) not in (None, "127.0.0.1", "localhost"):
            case.body[key] = LOOPBACK_URI
    address = case.body.get("migration_address")
    if isinstance(address, str) and address:
        case.body["migration_address"] = "127.0.0.1"


@pytest.fixture
def api(host_a, host_b, add_host, make_user):
    """The schema as the API serves it to a signed-in administrator (a personal token), called
    in-process through Django's WSGI handler — inside the test's transaction, like the test client
    (which is why the handler must not close the database connection after each request)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from accounts.services import token_create
    from jobs.models import Job
    from networks.models import Network
    from storage.models import StoragePool
    from vms.models import VM

    admin = make_user("fuzzer", "admin")
    _instance, token = token_create(user=admin, name="fuzz", expires_in_days=1)
    _spare, _ = token_create(user=admin, name="spare", expires_in_days=1)
    headers = {"Authorization": f"Token {token}"}
    web1 = VM.objects.get(name="web-1")
    job = Job.objects.create(kind="reboot", vm=web1, vm_uuid=web1.uuid, host=host_a, status="succeeded")
    # real ids, so that generated bodies and queries reach past "there is no such VM"
    pool = StoragePool.objects.get(host=add_host("storage", "host-storage.xml"), name="images")
    known = {
        "uuid": str(web1.uuid),
        "hosts": host_b.pk,
        "jobs": job.pk,
        "audit": 1,
        "tokens": _spare.token_key,
        "pools": pool.pk,
        "volumes": pool.volumes.get().pk,
        "uploads": job.pk,
        "networks": Network.objects.get(host=add_host("nethost", "host-net.xml"), name="default").pk,
    }
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application(), headers=headers), headers, known
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def check_answer(case, response, seen: Counter) -> None:
    label = f"{case.method} {case.formatted_path} body={case.body!r:.300} query={case.query!r:.200}"
    seen[response.status_code] += 1
    assert response.status_code < 500, f"{label} → {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])[0]
        assert content_type.startswith("application/json"), (
            f"{label} → {response.status_code} is not JSON: {content_type}"
        )
        body = response.json()
        assert isinstance(body, dict) and body.get("error") and body.get("code"), f"{label} → {body}"
        assert "Traceback" not in response.text


def real_ids(operation, known) -> dict | None:
    """Path parameters naming objects that exist, for the operations that take any."""
    path = operation.path
    if "{uuid}" in path:
        return {"uuid": known["uuid"]}
    if "{id}" in path:
        return {"id": known[path.split("/")[2]]}
    return None


def test_generated_requests_never_get_a_500_or_a_traceback(api):
    schema, headers, known = api
    seen: Counter = Counter()
    tried = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25, "the schema lost operations"
    variants = [(mode, None) for mode in MODES]
    for operation in operations:
        ids = real_ids(operation, known)
        for mode, path_parameters in variants + ([(m, ids) for m in MODES] if ids else []):
            try:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
            except Exception as exc:  # an operation with nothing to break in this mode
                if mode == schemathesis.GenerationMode.NEGATIVE:
                    continue
                raise AssertionError(f"{operation.label}: {exc}") from exc

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case):
                nonlocal tried
                keep_on_this_machine(case)
                tried += 1
                check_answer(case, case.call(headers=headers), seen)

            try:
                run()
            except Unsatisfiable:
                pass
    print(f"\ngenerated API requests: {tried} over {len(operations)} operations; answers: {dict(sorted(seen.items()))}")
    assert tried >= len(operations) * EXAMPLES // 2
