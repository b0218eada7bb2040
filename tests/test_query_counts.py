"""Pages and API lists make the same number of SQL queries whatever the fleet's size."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hosts.models import Host
from jobs.models import Job
from vms.models import VM

PAGES = [
    "/",
    "/?sort=-memory&state=running",
    "/?q=vm-1&sort=host",
    "/hosts/",
    "/jobs/",
    "/api/vms/?limit=100",
    "/api/vms/?state=running&sort=-changed",
    "/api/hosts/",
    "/api/jobs/",
]


def grow(hosts: int, vms_per_host: int) -> list[Host]:
    """Add hosts with VMs and a job per VM straight into the database."""
    start = Host.objects.count()
    made = []
    for h in range(start, start + hosts):
        host = Host.objects.create(
            name=f"h{h}", uri=f"test:///tmp/h{h}.xml", state="connected", cpus=8, memory_bytes=2**34
        )
        vms = VM.objects.bulk_create(
            VM(
                uuid=uuid.uuid4(),
                host=host,
                name=f"vm-{h}-{i}",
                state="running" if i % 3 else "shutoff",
                vcpus=1,
                memory_kib=2**20,
            )
            for i in range(vms_per_host)
        )
        Job.objects.bulk_create(
            Job(
                kind="suspend",
                vm=vm,
                vm_uuid=vm.uuid,
                vm_name=vm.name,
                host=host,
                host_name=host.name,
                status="succeeded",
            )
            for vm in vms
        )
        made.append(host)
    return made


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(ctx.captured_queries)


@pytest.mark.django_db
def test_query_counts_do_not_grow_with_vms_or_hosts(admin_client):
    grow(2, 5)
    small = {url: queries(admin_client, url) for url in PAGES}
    grow(20, 60)
    large = {url: queries(admin_client, url) for url in PAGES}
    host_page = f"/hosts/{Host.objects.first().pk}/"
    vm_page = f"/vms/{VM.objects.first().uuid}/"
    assert small == large, {u: (small[u], large[u]) for u in PAGES if small[u] != large[u]}
    assert queries(admin_client, host_page) == queries(admin_client, f"/hosts/{Host.objects.last().pk}/")
    assert queries(admin_client, vm_page) <= 12
    print({u: large[u] for u in PAGES})
