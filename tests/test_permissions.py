"""Every URL of the site, for every kind of user: who gets in, who is refused, and how.

The URL patterns come from Django's resolver, so a new page or endpoint fails
``test_every_url_is_in_the_table`` until it is added to ENDPOINTS with the right it needs.

Users: anonymous, a viewer, an operator and an admin (fleet-wide roles), an operator on host-a
only (guardian object permissions on the host) and an operator on the VM web-1 only (object
permissions on the VM). Objects "inside" are on host-a (web-1), "outside" on host-b (cache-1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from guardian.shortcuts import assign_perm

from jobs.models import Job
from vms.models import VM

WEB1 = "11111111-1111-4111-8111-111111111101"  # host-a, running, VNC
CACHE1 = "22222222-2222-4222-8222-222222222201"  # host-b, running

# needs: public | login | view | operate | console | migrate | configure | manage | maintain | admin
# kind: page (anonymous → login redirect) | api (anonymous → 401 JSON) | json (anonymous → 401 JSON)


@dataclass(frozen=True)
class Call:
    method: str
    need: str
    data: dict | None = None
    json: bool = False  # send data as a JSON body (API)


ENDPOINTS: dict[str, tuple[str, list[Call]]] = {
    "fleet": ("page", [Call("GET", "login")]),
    "login": ("public", [Call("GET", "public")]),
    "logout": ("public", [Call("POST", "public")]),
    "healthz": ("public", [Call("GET", "public")]),
    "api-not-found": ("public", [Call("GET", "public")]),  # unknown API URLs: a JSON 404, nothing to guard
    "hosts:list": ("page", [Call("GET", "login")]),
    "hosts:add": ("page", [Call("GET", "manage"), Call("POST", "manage", {"name": "new-host", "uri": "nonsense"})]),
    "hosts:detail": ("page", [Call("GET", "view")]),
    "hosts:edit": ("page", [Call("GET", "manage"), Call("POST", "manage", {"name": "", "uri": ""})]),
    "hosts:sync": ("page", [Call("POST", "manage")]),
    "migration:maintenance": ("page", [Call("POST", "maintain")]),
    "hosts:remove": ("page", [Call("GET", "manage"), Call("POST", "manage")]),
    "vms:bulk": ("page", [Call("POST", "login", {"action": "suspend", "vms": []})]),
    "vms:detail": ("page", [Call("GET", "view")]),
    "vms:delete": ("page", [Call("GET", "operate")]),
    "vms:action": ("page", [Call("POST", "operate")]),
    "migration:migrate": ("page", [Call("GET", "migrate"), Call("POST", "migrate", {"target": ""})]),
    "migration:check": ("json", [Call("POST", "migrate", {"target": ""})]),
    "console:page": ("page", [Call("GET", "console")]),
    "console:ticket": ("json", [Call("POST", "console")]),
    "console:api-ticket": ("api", [Call("POST", "console")]),
    "console:api-sessions": ("api", [Call("GET", "console")]),
    "jobs:list": ("page", [Call("GET", "login")]),
    "jobs:detail": ("page", [Call("GET", "view")]),
    "jobs:cancel": ("page", [Call("POST", "operate")]),
    "migration:postcopy": ("page", [Call("POST", "migrate")]),
    "audit:list": ("page", [Call("GET", "login")]),
    "accounts:tokens": ("page", [Call("GET", "login"), Call("POST", "login", {"name": "", "expires_in_days": 7})]),
    "accounts:token-revoke": ("page", [Call("POST", "login")]),
    "api-root": ("api", [Call("GET", "login")]),
    "api-schema": ("api", [Call("GET", "login")]),
    "swagger-ui": ("page", [Call("GET", "login")]),
    "api-host-list": ("api", [Call("GET", "login"), Call("POST", "manage", {"name": "x", "uri": "bad"}, True)]),
    "api-host-detail": (
        "api",
        [Call("GET", "view"), Call("PATCH", "manage", {"name": "renamed"}, True), Call("DELETE", "manage")],
    ),
    "migration:api-maintenance": ("api", [Call("POST", "maintain", {"action": "leave"}, True)]),
    "api-host-sync": ("api", [Call("POST", "manage")]),
    "api-vm-list": ("api", [Call("GET", "login")]),
    "api-vm-bulk": ("api", [Call("POST", "login", {"action": "suspend", "vms": [CACHE1]}, True)]),
    "api-vm-detail": ("api", [Call("GET", "view")]),
    "api-vm-act": ("api", [Call("POST", "operate", {"action": "suspend"}, True)]),
    "migration:api-migrate": ("api", [Call("POST", "migrate", {"target": 999999}, True)]),
    "migration:api-preflight": ("api", [Call("POST", "migrate", {"target": 999999}, True)]),
    "migration:api-targets": ("api", [Call("GET", "migrate")]),
    "api-job-list": ("api", [Call("GET", "login")]),
    "api-job-detail": ("api", [Call("GET", "view")]),
    "api-job-cancel": ("api", [Call("POST", "operate")]),
    "migration:api-postcopy": ("api", [Call("POST", "migrate")]),
    "api-audit-list": ("api", [Call("GET", "login")]),
    "api-audit-detail": ("api", [Call("GET", "login")]),
    "api-token-list": ("api", [Call("GET", "login"), Call("POST", "login", {"name": "t", "expires_in_days": 1}, True)]),
    "api-token-detail": ("api", [Call("DELETE", "login")]),
    # storage: the access rules of the pool's host (viewing a host's pools needs view on the host,
    # changing them manage)
    "storage:list": ("page", [Call("GET", "login")]),
    "storage:pool": ("page", [Call("GET", "view")]),
    "storage:pool-new": ("page", [Call("GET", "manage"), Call("POST", "manage", {"name": "", "type": "dir"})]),
    "storage:pool-action": ("page", [Call("POST", "manage")]),
    "storage:volume-create": ("page", [Call("POST", "manage", {"name": "v.qcow2", "capacity": "1M"})]),
    "storage:volume-action": ("page", [Call("POST", "manage")]),
    "api-pool-list": (
        "api",
        [
            Call("GET", "login"),
            Call(
                "POST",
                "manage",
                {"host": "{host}", "name": "p", "type": "dir", "params": {"target_path": "/var/lib/p"}},
                True,
            ),
        ],
    ),
    "api-pool-detail": ("api", [Call("GET", "view")]),
    "api-pool-act": ("api", [Call("POST", "manage", {"action": "refresh"}, True)]),
    "api-volume-list": (
        "api",
        [
            Call("GET", "login"),
            Call("POST", "manage", {"pool": "{pool}", "name": "v", "params": {"capacity": "1M"}}, True),
        ],
    ),
    "api-volume-detail": ("api", [Call("GET", "view")]),
    "api-volume-act": ("api", [Call("POST", "manage", {"action": "wipe"}, True)]),
    "api-volume-copy": ("api", [Call("POST", "manage", {"target_pool": "{pool}", "name": "copied.img"}, True)]),
    "api-volume-download": ("api", [Call("POST", "manage")]),
    "storage:api-upload": ("api", [Call("POST", "login", {"pool": 0, "name": "x", "params": {"size": 1}}, True)]),
    "storage:api-upload-resume": ("api", [Call("POST", "view")]),
    # networks: the access rules of the network's host; moving a VM's NIC: operate on the VM
    "networks:list": ("page", [Call("GET", "login")]),
    "networks:detail": ("page", [Call("GET", "view")]),
    "networks:new": ("page", [Call("GET", "manage"), Call("POST", "manage", {"name": "", "mode": "nat"})]),
    "networks:action": ("page", [Call("POST", "manage")]),
    "networks:dhcp-host": ("page", [Call("POST", "manage", {"mac": "52:54:00:00:00:09", "ip": "10.20.0.9"})]),
    "networks:nic-network": ("page", [Call("POST", "operate", {"mac": "52:54:00:00:00:09", "network": "x"})]),
    "api-network-list": (
        "api",
        [
            Call("GET", "login"),
            Call("POST", "manage", {"host": "{host}", "name": "n", "params": {"mode": "isolated"}}, True),
        ],
    ),
    "api-network-detail": ("api", [Call("GET", "view")]),
    "api-network-act": ("api", [Call("POST", "manage", {"action": "autostart_on"}, True)]),
    "api-network-dhcp-hosts": ("api", [Call("POST", "manage", {"mac": "52:54:00:00:00:09", "ip": "10.20.0.9"}, True)]),
    "api-vm-nics": (
        "api",
        [Call("GET", "view"), Call("POST", "operate", {"mac": "52:54:00:00:00:09", "network": "x"}, True)],
    ),
    # provisioning: creating VMs and changing them needs the configure right (the operator role, or
    # configure_vms on a host / change_vm on a VM); the hardware page is seen with the VM
    "provisioning:new": ("page", [Call("GET", "configure"), Call("POST", "configure", {"name": ""})]),
    "provisioning:define": ("page", [Call("GET", "configure"), Call("POST", "configure", {"xml": ""})]),
    "provisioning:xml": ("page", [Call("GET", "configure")]),
    "provisioning:hardware": ("page", [Call("GET", "view")]),
    "provisioning:change": ("page", [Call("POST", "configure", {"vcpus": "1"})]),
    "provisioning:clone": ("page", [Call("GET", "configure"), Call("POST", "configure", {"name": "a/b"})]),
    "provisioning:ssh-keys": ("page", [Call("GET", "login"), Call("POST", "login", {"public_key": "x"})]),
    "api-vm-create": ("api", [Call("POST", "configure", {"host": "{host}", "name": "n", "source": "import"}, True)]),
    "api-vm-define": (
        "api",
        [Call("POST", "configure", {"host": "{host}", "xml": "<domain type='test'><name>n</name></domain>"}, True)],
    ),
    "api-vm-definition": ("api", [Call("GET", "configure"), Call("PUT", "configure", {"xml": "<domain/>"}, True)]),
    "api-vm-hardware": ("api", [Call("POST", "configure", {"vcpus": 1}, True)]),
    # templates: seen by all; marking, unmarking and deploying need the configure right on the VM
    "templates:list": ("page", [Call("GET", "login")]),
    "templates:deploy": ("page", [Call("GET", "configure"), Call("POST", "configure", {"name_pattern": "t{n}"})]),
    "templates:mark": ("page", [Call("POST", "configure", {"action": "mark"})]),
    "api-templates": ("api", [Call("GET", "login")]),
    "api-vm-template": ("api", [Call("POST", "configure"), Call("DELETE", "configure")]),
    "api-template-deploy": ("api", [Call("POST", "configure", {"name_pattern": "t{n}"}, True)]),
    "api-vm-clone": ("api", [Call("POST", "configure", {"name": "a/b"}, True)]),
    "api-os-presets": ("api", [Call("GET", "login")]),
    "api-host-capabilities": ("api", [Call("GET", "view")]),
    # snapshots: seen with the VM; taking, reverting (it throws the present state away) and deleting
    # need the configure right
    "snapshots:create": ("page", [Call("POST", "configure", {"name": "p1"})]),
    "snapshots:revert": ("page", [Call("POST", "configure", {"after": ""})]),
    "snapshots:delete": ("page", [Call("POST", "configure")]),
    "snapshots:api-list": ("api", [Call("GET", "view"), Call("POST", "configure", {"name": "a1"}, True)]),
    "snapshots:api-detail": ("api", [Call("DELETE", "configure")]),
    "snapshots:api-revert": ("api", [Call("POST", "configure", {}, True)]),
}
# The admin site is one guarded door (VirtfleetAdminSite.has_permission); it is tested as such below.
SKIPPED_PREFIXES = ("admin/",)

USERS = ["anonymous", "viewer", "vm_operator", "host_operator", "operator", "admin"]
ROLE_RIGHTS = {
    "viewer": {"login", "view"},
    "operator": {"login", "view", "operate", "console", "migrate", "configure"},
    "admin": {"login", "view", "operate", "console", "migrate", "configure", "manage", "maintain", "admin"},
}


def url_patterns():
    """(route, name) of every URL the site serves (the admin site's are left to its own test)."""

    def walk(resolver, prefix="", namespace=None):
        for p in resolver.url_patterns:
            if isinstance(p, URLResolver):
                ns = ":".join(x for x in (namespace, p.namespace) if x) or None
                yield from walk(p, prefix + str(p.pattern), ns)
            elif isinstance(p, URLPattern):
                name = f"{namespace}:{p.name}" if namespace and p.name else p.name
                yield prefix + str(p.pattern), name

    return [(route, name) for route, name in walk(get_resolver()) if not route.startswith(SKIPPED_PREFIXES)]


def test_every_url_is_in_the_table():
    names = {name for _route, name in url_patterns()}
    assert None not in names, "every URL pattern needs a name to be covered here"
    missing = names - set(ENDPOINTS)
    assert not missing, f"add these URLs to ENDPOINTS in {__file__} with the right they need: {sorted(missing)}"
    assert not set(ENDPOINTS) - names, "ENDPOINTS names URLs that no longer exist"


# --- the world ------------------------------------------------------------------------------------------
@pytest.fixture
def world(host_a, host_b, make_user, admin_user, on_commit, raw_libvirt):
    from accounts.services import token_create
    from hosts.services import host_sync
    from networks.models import Network
    from storage.models import StoragePool

    web1 = VM.objects.get(uuid=WEB1)
    cache1 = VM.objects.get(uuid=CACHE1)
    users = {
        "viewer": make_user("vic", "viewer"),
        "operator": make_user("olga", "operator"),
        "admin": make_user("ada", "admin"),
        "host_operator": make_user("hank"),
        "vm_operator": make_user("vera"),
    }
    for perm in ("view_host", "operate_vms", "console_vms", "migrate_vms"):
        assign_perm(f"hosts.{perm}", users["host_operator"], host_a)
    for perm in ("view_vm", "operate_vm", "console_vm", "migrate_vm"):
        assign_perm(f"vms.{perm}", users["vm_operator"], web1)

    def job(vm, kind="suspend", status="succeeded"):
        return Job.objects.create(
            kind=kind, vm=vm, vm_uuid=vm.uuid, vm_name=vm.name, host=vm.host, host_name=vm.host.name, status=status
        )

    jobs = {"inside": job(web1), "outside": job(cache1)}
    pools = {}
    for where, host in (("inside", host_a), ("outside", host_b)):
        conn = raw_libvirt(host)
        pool = conn.storagePoolDefineXML(
            f"<pool type='dir'><name>{where}</name><target><path>/var/lib/{where}</path></target></pool>"
        )
        pool.create(0)
        pool.createXML(f"<volume><name>{where}.img</name><capacity>1048576</capacity></volume>", 0)
        host_sync(host=host)
        pools[where] = StoragePool.objects.get(host=host, name=where)
        conn.networkCreateXML(f"<network><name>net-{where}</name><ip address='10.20.{len(pools)}.1' prefix='24'>"
                              f"<dhcp><range start='10.20.{len(pools)}.10' end='10.20.{len(pools)}.20'/></dhcp></ip>"
                              "</network>")  # fmt: skip
        host_sync(host=host)
    tokens = {}
    for key, user in users.items():
        instance, _token = token_create(user=user, name=f"{key} token", expires_in_days=7)
        tokens[key] = instance.token_key
    from audit.models import AuditEvent

    return {
        "users": users,
        "hosts": {"inside": host_a, "outside": host_b},
        "vms": {"inside": web1, "outside": cache1},
        "jobs": jobs,
        "pools": pools,
        "volumes": {where: pool.volumes.get() for where, pool in pools.items()},
        "networks": {where: Network.objects.get(name=f"net-{where}") for where in pools},
        "tokens": tokens,
        "event": AuditEvent.objects.order_by("pk").first(),
    }


def fill(route: str, name: str, where: str, world, who: str) -> str:
    """A concrete URL for ``route``: objects inside (host-a) or outside (host-b) the scoped users' scope."""
    host = world["hosts"][where]
    vm = world["vms"][where]
    job = world["jobs"][where]
    values = {
        "uuid": str(vm.uuid),
        "host_id": str(host.pk),
        "job_id": str(job.pk),
        "kind": "suspend",
        "action": "leave",
        "token_id": world["tokens"].get(who, "vf_nosuchtoken"),
        "change": "vcpus",
        "snapshot": "s1",
    }
    pool, volume = world["pools"][where], world["volumes"][where]
    values["pool_id"], values["volume_id"] = str(pool.pk), str(volume.pk)
    values["network_id"] = str(world["networks"][where].pk)
    if name == "networks:action":
        values["action"] = "autostart_on"
    if name == "storage:pool-action":
        values["action"] = "refresh"
    elif name == "storage:volume-action":
        values["action"] = "wipe"
    if name.startswith("api-network"):
        values["pk"] = values["network_id"]
    elif name.startswith("api-pool"):
        values["pk"] = str(pool.pk)
    elif name.startswith("api-volume"):
        values["pk"] = str(volume.pk)
    elif name.startswith("api-host"):
        values["pk"] = str(host.pk)
    elif name.startswith("api-job"):
        values["pk"] = str(job.pk)
    elif name.startswith("api-audit"):
        values["pk"] = str(world["event"].pk)
    elif name.startswith("api-token"):
        values["pk"] = world["tokens"].get(who, "vf_nosuchtoken")
    path = route.replace("^", "").replace("$", "")
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], path)
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], path)
    return "/" + path.replace("\\", "")


def allowed(who: str, need: str, where: str, name: str) -> bool:
    if need == "public":
        return True
    if who == "anonymous":
        return False
    if who in ROLE_RIGHTS:
        return need in ROLE_RIGHTS[who]
    # scoped operators: operator rights inside their scope, nothing outside; the VM-scoped one may
    # not see its VM's host
    if need == "login":
        return True
    if need in ("manage", "maintain", "admin") or where == "outside":
        return False
    if who == "vm_operator" and name.startswith(
        (
            "hosts:",
            "api-host",
            "storage:pool",
            "storage:volume",
            "api-pool",
            "api-volume",
            "networks:detail",
            "networks:new",
            "networks:action",
            "networks:dhcp-host",
            "api-network",
        )
    ):
        return False  # a host's pools and volumes are the host's
    return need in ("view", "operate", "console", "migrate")


def call(client, method: str, url: str, spec: Call, names: dict | None = None):
    """``names``: what "{host}" and "{pool}" in a JSON body stand for (the objects of this round)."""
    kwargs = {"HTTP_HOST": "127.0.0.1:8000"}
    if spec.json:
        data = {k: (names or {}).get(v, v) if isinstance(v, str) else v for k, v in (spec.data or {}).items()}
        return getattr(client, method.lower())(url, data, content_type="application/json", **kwargs)
    if method in ("GET", "DELETE"):
        return getattr(client, method.lower())(url, **kwargs)
    return getattr(client, method.lower())(url, spec.data or {}, **kwargs)


def check(response, *, who: str, ok: bool, kind: str, label: str) -> None:
    code = response.status_code
    assert code < 500, f"{label}: {code}"
    if kind == "public":
        return  # sign-in, sign-out, health: open to all (and nothing to refuse)
    if ok:
        assert code not in (401, 403), f"{label}: refused ({code}) but should be allowed: {response.content[:300]}"
        if code == 302:
            assert not response["Location"].startswith("/login/"), f"{label}: sent to sign in"
        return
    if who == "anonymous":
        if kind == "page":
            assert code == 302 and response["Location"].startswith("/login/"), f"{label}: {code}"
        else:
            assert code in (401, 403), f"{label}: {code}"
            if "openapi" in response["Content-Type"]:  # the schema answers in its own media type
                assert code == 401, label
                return
            assert response["Content-Type"].startswith("application/json"), f"{label}: not JSON"
            body = response.json()
            assert body.get("error") and body.get("code"), f"{label}: {body}"
            if kind == "api":
                assert code == 401 and response.has_header("WWW-Authenticate"), f"{label}: {code}"
        return
    assert code == 403, f"{label}: {code} but should be refused: {response.content[:300]}"
    if kind == "page" and not response["Content-Type"].startswith("application/json"):
        assert b"Not permitted" in response.content and b"ask an administrator" in response.content, label
    else:
        body = response.json()
        assert body["code"] == "forbidden" and "You may not" in body["error"], f"{label}: {body}"


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_who_may_use_each_url(name, world, client):
    """Anonymous → sign in (pages) or 401 (API); roles and object permissions decide the rest.

    Users act from the least to the most privileged, each on an object outside the scoped users'
    scope first, then inside; an allowed request may change state (a later one may then get 400,
    404 or 409 — never 401 or 403).
    """
    from django.test import Client

    kind, calls = ENDPOINTS[name]
    routes = [route for route, n in url_patterns() if n == name]
    assert routes, name
    for who in USERS:
        c = Client()
        if who != "anonymous":
            c.force_login(world["users"][who])
        for where in ("outside", "inside"):
            url = fill(routes[0], name, where, world, who)
            for spec in calls:
                if spec.method == "DELETE" and who != "admin" and allowed(who, spec.need, where, name):
                    continue  # deleting is checked once, by the last user
                ok = allowed(who, spec.need, where, name)
                names = {"{host}": world["hosts"][where].pk, "{pool}": world["pools"][where].pk}
                response = call(c, spec.method, url, spec, names)
                check(response, who=who, ok=ok, kind=kind, label=f"{who} {spec.method} {url} ({where})")


# --- the admin site ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("who", "ok"),
    [("viewer", False), ("operator", False), ("host_operator", False), ("admin", True)],
)
def test_admin_site_is_for_administrators_only(world, client, who, ok):
    user = world["users"][who]
    user.is_staff = True  # not enough on its own
    user.save()
    client.force_login(user)
    host = world["hosts"]["inside"]
    for url in (
        "/admin/",
        "/admin/auth/user/",
        f"/admin/hosts/host/{host.pk}/permissions/",
        "/admin/audit/auditevent/",
    ):
        response = client.get(url)
        if ok:
            assert response.status_code == 200, (url, response.status_code)
        else:
            assert response.status_code == 302 and "/admin/login/" in response["Location"], (url, response.status_code)


def test_anonymous_is_sent_to_the_admin_sign_in(client, db):
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_admins_may_not_touch_superusers_or_make_one(world, client, admin_user):
    client.force_login(world["users"]["admin"])
    assert client.get(f"/admin/auth/user/{admin_user.pk}/change/").status_code in (302, 403) or (
        b'name="is_superuser"' not in client.get(f"/admin/auth/user/{admin_user.pk}/change/").content
    )
    page = client.get(f"/admin/auth/user/{world['users']['viewer'].pk}/change/").content.decode()
    assert 'name="is_superuser"' not in page  # shown read-only
    assert 'name="groups"' in page  # roles are theirs to give


# --- what the pages show ------------------------------------------------------------------------------------
def test_viewer_sees_no_action_buttons(world, client):
    client.force_login(world["users"]["viewer"])
    fleet = client.get("/").content.decode()
    assert 'id="bulk-form"' not in fleet and "+ Add host" not in fleet and 'name="vms"' not in fleet
    vm_page = client.get(f"/vms/{WEB1}/").content.decode()
    assert "data-action=" not in vm_page and "Migrate…" not in vm_page and "Delete…" not in vm_page
    assert "Read-only" in vm_page
    host_page = client.get(f"/hosts/{world['hosts']['inside'].pk}/").content.decode()
    for word in ("Sync now", "Enter maintenance", "Edit</a>", "Remove</a>"):
        assert word not in host_page
    assert "Users and permissions" not in fleet


def test_operator_sees_vm_buttons_but_no_host_buttons(world, client):
    client.force_login(world["users"]["operator"])
    vm_page = client.get(f"/vms/{WEB1}/").content.decode()
    assert (
        'data-action="suspend"' in vm_page and 'data-action="migrate"' in vm_page and 'data-action="console"' in vm_page
    )
    host_page = client.get(f"/hosts/{world['hosts']['inside'].pk}/").content.decode()
    assert (
        "Sync now" not in host_page
        and "Enter maintenance" not in host_page
        and "+ Add host" not in client.get("/hosts/").content.decode()
    )
    assert 'id="bulk-form"' in client.get("/").content.decode()


def test_admin_sees_host_buttons_and_the_admin_link(world, client):
    client.force_login(world["users"]["admin"])
    host_page = client.get(f"/hosts/{world['hosts']['inside'].pk}/").content.decode()
    for word in ('data-action="sync"', 'data-action="enter-maintenance"', 'data-action="edit"', 'data-action="remove"'):
        assert word in host_page
    assert "Users and permissions" in host_page


def test_scoped_users_see_only_their_part_of_the_fleet(world, client):
    """Lists, counts, filters and totals, on pages and in the API."""
    for who, names, hosts in [
        ("host_operator", {"web-1", "db-1", "batch-1"}, {"host-a"}),
        ("vm_operator", {"web-1"}, set()),
    ]:
        client.force_login(world["users"][who])
        fleet = client.get("/").content.decode()
        assert "cache-1" not in fleet and "host-b" not in fleet, who
        for name in names:
            assert name in fleet, (who, name)
        assert f"{len(names)} match" in fleet, who
        api = client.get("/api/vms/").json()
        assert {v["name"] for v in api["results"]} == names and api["count"] == len(names), who
        assert {h["name"] for h in client.get("/api/hosts/").json()} == hosts, who
        summary = client.get("/?fragment=summary").content.decode()
        assert f">{len(names)}<" in summary.replace(" ", ""), (who, summary)
        jobs = client.get("/api/jobs/").json()
        assert {j["vm_name"] for j in jobs["results"]} == {"web-1"}, who
        assert "cache-1" not in client.get("/jobs/").content.decode()
        # a filter by a host they may not see finds nothing
        outside = world["hosts"]["outside"].pk
        assert client.get(f"/api/vms/?host={outside}").json()["count"] == 0
        # bulk actions skip VMs they may not see as if they did not exist
        bulk = client.post(
            "/api/vms/actions/", {"action": "suspend", "vms": [CACHE1]}, content_type="application/json"
        ).json()
        assert bulk["jobs"] == [] and bulk["refused"][0]["code"] == "not_found" and "cache-1" not in str(bulk)


def test_scoped_operator_sees_only_visible_migration_targets(world, client):
    client.force_login(world["users"]["host_operator"])
    assert client.get(f"/api/vms/{WEB1}/migration/targets/").json() == []
    client.force_login(world["users"]["operator"])
    assert [t["name"] for t in client.get(f"/api/vms/{WEB1}/migration/targets/").json()] == ["host-b"]


def test_refusals_say_what_to_ask_for(world, client):
    client.force_login(world["users"]["viewer"])
    response = client.post(f"/api/vms/{WEB1}/migrate/", {"target": 1}, content_type="application/json")
    assert response.status_code == 403
    assert response.json() == {
        "error": "You may not migrate VM web-1: ask an administrator for operator rights on it or its host.",
        "code": "forbidden",
    }
    client.force_login(world["users"]["vm_operator"])
    hidden = client.get(f"/vms/{CACHE1}/")
    assert hidden.status_code == 403 and b"cache-1" not in hidden.content  # not even its name
