import pytest

from vms.models import VM


def test_fleet_page_lists_every_vm_of_every_host(admin_client, host_a, host_b):
    body = admin_client.get("/").content.decode()
    for name in ("web-1", "db-1", "batch-1", "cache-1", "host-a", "host-b"):
        assert name in body


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ("?q=web", ["web-1"], ["db-1", "cache-1"]),
        ("?state=shutoff", ["db-1"], ["web-1", "batch-1"]),
        ("?q=11111111-1111-4111-8111-11111111110", ["web-1", "db-1", "batch-1"], ["cache-1"]),
    ],
)
def test_fleet_filters(admin_client, host_a, host_b, query, shown, hidden):
    body = admin_client.get("/" + query + "&fragment=vms").content.decode()
    for name in shown:
        assert f">{name}<" in body
    for name in hidden:
        assert f">{name}<" not in body


def test_fleet_filter_by_host(admin_client, host_a, host_b):
    body = admin_client.get(f"/?host={host_b.pk}&fragment=vms").content.decode()
    assert ">cache-1<" in body and ">web-1<" not in body


def test_fleet_sorting_and_pagination(admin_client, host_a, host_b):
    body = admin_client.get("/?sort=-memory&per_page=25&fragment=vms").content.decode()
    order = [body.index(f">{n}<") for n in ("db-1", "web-1", "cache-1", "batch-1")]
    assert order == sorted(order)  # 2048, 512 (current), 512, 256 MiB


@pytest.mark.parametrize("query", ["?page=999", "?page=abc", "?sort=;drop", "?host=x", "?state=weird", "?per_page=-3"])
def test_fleet_ignores_malformed_parameters(admin_client, host_a, query):
    assert admin_client.get("/" + query).status_code == 200


def test_vm_page_shows_facts_and_highlighted_xml(admin_client, host_a):
    vm = VM.objects.get(name="web-1")
    body = admin_client.get(f"/vms/{vm.uuid}/").content.decode()
    assert str(vm.uuid) in body and "host-a" in body
    assert 'class="xml"' in body and "web-1" in body


def test_vm_page_never_shows_the_vnc_endpoint(admin_client, host_a):
    vm = VM.objects.get(name="web-1")
    assert vm.graphics_port == 5901
    body = admin_client.get(f"/vms/{vm.uuid}/").content.decode()
    assert "5901" not in body and "VNC on its host&#x27;s loopback only" in body


def test_fleet_console_cell_links_only_for_users_who_may_open_it(client, host_a, make_user):
    from hosts.models import Host

    web = VM.objects.get(name="web-1")  # running, VNC
    client.force_login(make_user("olga", "operator"))
    body = client.get("/?fragment=vms").content.decode()
    assert f'href="/vms/{web.uuid}/console/"' in body
    assert 'data-console="1"' in body and 'data-console-states="crashed paused running shutting_down"' in body
    # a shut-off VM gets no link, and says why
    db1 = VM.objects.get(name="db-1")
    assert f'href="/vms/{db1.uuid}/console/"' not in body and "No console: the VM is shut off" in body
    # nor does a VM whose host is unreachable
    Host.objects.filter(pk=host_a.pk).update(state="unreachable")
    assert "/console/" not in client.get("/?fragment=vms").content.decode()
    Host.objects.filter(pk=host_a.pk).update(state="connected")
    client.force_login(make_user("vic", "viewer"))
    body = client.get("/?fragment=vms").content.decode()
    assert "/console/" not in body and 'data-console="1"' not in body


def test_vm_scoped_user_sees_the_host_name_without_a_link(client, host_a, make_user):
    from guardian.shortcuts import assign_perm

    web = VM.objects.get(name="web-1")
    user = make_user("vera")
    assign_perm("vms.view_vm", user, web)
    client.force_login(user)
    for url in (f"/vms/{web.uuid}/", "/?fragment=vms"):
        body = client.get(url).content.decode()
        assert "host-a" in body and f'href="/hosts/{host_a.pk}/"' not in body


def test_unknown_vm_is_a_404(admin_client, db):
    assert admin_client.get("/vms/99999999-9999-4999-8999-999999999999/").status_code == 404


def test_fleet_page_makes_no_libvirt_call(admin_client, host_a, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("libvirt called during a page request")

    monkeypatch.setattr("hosts.connections.host_connection", boom)
    monkeypatch.setattr("virt.connection.open_connection", boom)
    vm = VM.objects.get(name="web-1")
    for url in ("/", "/hosts/", f"/hosts/{host_a.pk}/", f"/vms/{vm.uuid}/", "/api/vms/", "/api/hosts/"):
        assert admin_client.get(url).status_code == 200
