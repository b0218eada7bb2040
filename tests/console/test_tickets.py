"""Console tickets and targets: issue, single use, expiry, binding to user and VM, refusals, and
how the VNC endpoint is derived — against libvirt's test driver and the real test Redis."""

import time

import pytest

from console.models import ConsoleSession
from console.services import (
    REFUSALS,
    TicketRefused,
    _keys,
    _redis,
    console_connect_authorize,
    console_session_close,
    console_session_open,
    console_sessions,
    console_ticket_issue,
    console_ticket_take,
)
from core.errors import Forbidden, ServiceError
from virt import parse_uri
from virt.console import ConsoleEndpoint, ConsoleUnavailable, console_target, graphics_endpoint_from_xml, ssh_command
from virt.domains import PowerState
from vms.actions import console_refusal
from vms.models import VM

LOOPBACK = "22222222-2222-4222-8222-222222222201"
ANY_PASSWORD = "22222222-2222-4222-8222-222222222202"
SOCKET = "22222222-2222-4222-8222-222222222203"
SPICE = "22222222-2222-4222-8222-222222222204"
HEADLESS = "22222222-2222-4222-8222-222222222205"
OFF = "22222222-2222-4222-8222-222222222206"


@pytest.fixture
def console_host(add_host):
    return add_host("console-host", "host-console.xml")


@pytest.fixture
def alice(make_user):
    return make_user("alice", "operator")


@pytest.fixture
def bob(make_user):
    return make_user("bob", "operator")


def vm(uuid):
    return VM.objects.select_related("host").get(uuid=uuid)


# --- issue ----------------------------------------------------------------------------------------------
def test_ticket_is_a_random_token_with_the_proxy_url_and_a_short_lifetime(console_host, alice):
    ticket = console_ticket_issue(user=alice, vm=vm(LOOPBACK), http_host="dash.example.com:8000")
    assert len(ticket.token) == 43
    assert ticket.url == f"ws://dash.example.com:6080/?token={ticket.token}"
    assert 0 < ticket.expires_in <= 30
    ttl_ms = _redis().pttl(_keys(ticket.token)[0])
    assert 0 < ttl_ms <= 30_000
    assert console_ticket_issue(user=alice, vm=vm(LOOPBACK)).token != ticket.token


def test_ticket_url_follows_https_and_a_reverse_proxy_path(console_host, alice, settings):
    settings.VIRTFLEET = {**settings.VIRTFLEET, "CONSOLE_URL": "/console/websockify"}
    ticket = console_ticket_issue(user=alice, vm=vm(LOOPBACK), secure=True, http_host="fleet.example.com")
    assert ticket.url == f"wss://fleet.example.com/console/websockify?token={ticket.token}"


def test_browser_facing_ticket_says_nothing_about_the_vnc_endpoint(console_host, alice):
    ticket = console_ticket_issue(user=alice, vm=vm(ANY_PASSWORD), http_host="127.0.0.1:8000")
    assert "5912" not in ticket.url and "s3cr3t" not in repr(ticket)
    stored = _redis().get(_keys(ticket.token)[0])
    assert ticket.token.encode() not in stored  # Redis is keyed by a hash of the token


def test_ticket_carries_the_vnc_password_from_the_secure_xml_without_showing_it(console_host, alice):
    ticket = console_ticket_issue(user=alice, vm=vm(ANY_PASSWORD))
    data = console_ticket_take(token=ticket.token)
    assert data.password == "s3cr3t-pw"
    assert "s3cr3t" not in repr(data)


def test_anonymous_user_gets_no_ticket(console_host):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(Forbidden):
        console_ticket_issue(user=AnonymousUser(), vm=vm(LOOPBACK))


# --- single use, expiry, binding -----------------------------------------------------------------------------
def test_ticket_works_once_then_is_refused_as_reused(console_host, alice):
    ticket = console_ticket_issue(user=alice, vm=vm(LOOPBACK))
    data = console_connect_authorize(token=ticket.token, user=alice)
    assert (data.vm_uuid, data.user_id, data.host_name) == (LOOPBACK, alice.pk, "console-host")
    with pytest.raises(TicketRefused) as err:
        console_connect_authorize(token=ticket.token, user=alice)
    assert err.value.reason == "reused"
    assert err.value.refusal.code == 4409


def test_ticket_expires(console_host, alice, settings):
    settings.VIRTFLEET = {**settings.VIRTFLEET, "CONSOLE_TICKET_TTL": 1}
    ticket = console_ticket_issue(user=alice, vm=vm(LOOPBACK))
    assert ticket.expires_in == 1
    time.sleep(1.2)
    with pytest.raises(TicketRefused) as err:
        console_ticket_take(token=ticket.token)
    assert err.value.reason == "expired"
    assert "expired" in err.value.message


def test_ticket_lifetime_is_capped_at_30_seconds(console_host, alice, settings):
    settings.VIRTFLEET = {**settings.VIRTFLEET, "CONSOLE_TICKET_TTL": 600}
    assert console_ticket_issue(user=alice, vm=vm(LOOPBACK)).expires_in == 30


def test_forged_and_malformed_tokens_are_refused(console_host, alice):
    import secrets

    with pytest.raises(TicketRefused) as err:
        console_ticket_take(token=secrets.token_urlsafe(32))
    assert err.value.reason == "unknown"
    for bad in ("x", "../../etc/passwd", "a" * 500, "é" * 43):
        with pytest.raises(TicketRefused) as err:
            console_ticket_take(token=bad)
        assert err.value.reason == "unknown"
    with pytest.raises(TicketRefused) as err:
        console_ticket_take(token="")
    assert err.value.reason == "missing"


def test_another_users_ticket_is_refused_and_used_up(console_host, alice, bob):
    ticket = console_ticket_issue(user=alice, vm=vm(LOOPBACK))
    with pytest.raises(TicketRefused) as err:
        console_connect_authorize(token=ticket.token, user=bob)
    assert err.value.reason == "other_user"
    with pytest.raises(TicketRefused) as err:  # it leaked: not even its owner may use it now
        console_connect_authorize(token=ticket.token, user=alice)
    assert err.value.reason == "reused"


def test_signed_out_browser_does_not_burn_the_ticket(console_host, alice):
    from django.contrib.auth.models import AnonymousUser

    ticket = console_ticket_issue(user=alice, vm=vm(LOOPBACK))
    with pytest.raises(TicketRefused) as err:
        console_connect_authorize(token=ticket.token, user=AnonymousUser())
    assert err.value.reason == "not_signed_in"
    assert console_connect_authorize(token=ticket.token, user=alice).vm_uuid == LOOPBACK


def test_ticket_is_bound_to_its_vm(console_host, alice):
    first = console_connect_authorize(token=console_ticket_issue(user=alice, vm=vm(LOOPBACK)).token, user=alice)
    second = console_connect_authorize(token=console_ticket_issue(user=alice, vm=vm(ANY_PASSWORD)).token, user=alice)
    assert (first.vm_uuid, first.target.port) == (LOOPBACK, 5911)
    assert (second.vm_uuid, second.target.port) == (ANY_PASSWORD, 5912)


def test_refusal_reasons_fit_in_a_websocket_close_frame():
    for refusal in REFUSALS.values():
        assert 4000 <= refusal.code <= 4999
        assert len(refusal.short.encode()) <= 123


# --- refusals at issue time ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uuid", "code", "words"),
    [
        (OFF, "not_running", "shut off"),
        (HEADLESS, "no_graphics", "no graphics device"),
        (SPICE, "no_vnc", "only SPICE graphics"),
    ],
)
def test_console_that_cannot_be_reached_is_refused_saying_why(console_host, alice, uuid, code, words):
    with pytest.raises(ServiceError) as err:
        console_ticket_issue(user=alice, vm=vm(uuid))
    assert err.value.code == code
    assert words in err.value.message
    assert err.value.status_code == 409


def test_vm_gone_from_its_host_is_refused(console_host, alice, raw_libvirt):
    target = vm(LOOPBACK)
    dom = raw_libvirt(console_host).lookupByUUIDString(LOOPBACK)
    dom.destroy()
    dom.undefine()
    with pytest.raises(ServiceError) as err:
        console_ticket_issue(user=alice, vm=target)
    assert err.value.code == "gone"


def test_vm_whose_inventory_lags_behind_a_migration_opens_on_the_host_that_runs_it(console_host, host_a, alice):
    moved = vm(LOOPBACK)
    VM.objects.filter(pk=moved.pk).update(host=host_a, also_on=console_host)  # as during a migration
    data = console_ticket_take(token=console_ticket_issue(user=alice, vm=vm(LOOPBACK)).token)
    assert (data.host_name, data.target.port) == ("console-host", 5911)


def test_unreachable_host_is_refused(db, alice):
    from hosts.services import host_add

    host = host_add(name="dead", uri="qemu+tcp://127.0.0.1:9/system", allow_offline=True, request_sync=False)
    dead_vm = VM.objects.create(
        uuid="33333333-3333-4333-8333-333333333301", host=host, name="stranded", state="running", graphics_type="vnc"
    )
    assert "unreachable" in console_refusal(dead_vm)
    with pytest.raises(ServiceError) as err:
        console_ticket_issue(user=alice, vm=dead_vm)
    assert err.value.code == "host_unreachable"
    assert "dead cannot be reached" in err.value.message


def test_console_refusal_from_the_inventory(console_host):
    assert console_refusal(vm(LOOPBACK)) == ""
    assert "shut off" in console_refusal(vm(OFF))
    assert "no graphics" in console_refusal(vm(HEADLESS))
    assert "SPICE" in console_refusal(vm(SPICE))


# --- endpoint derivation --------------------------------------------------------------------------------------
def endpoint(listen="127.0.0.1", port=5900, **kw):
    return ConsoleEndpoint(
        state=kw.pop("state", PowerState.RUNNING),
        graphics=("vnc",),
        listen=listen,
        port=port,
        listen_type="address",
        **kw,
    )


def test_any_address_means_the_hosts_own_address_from_its_uri():
    for listen in ("0.0.0.0", "::"):  # noqa: S104 (a listen address read from XML)
        target = console_target(endpoint(listen), uri=parse_uri("qemu+tcp://kvm7.example.com/system"))
        assert (target.kind, target.host, target.port) == ("tcp", "kvm7.example.com", 5900)
        target = console_target(endpoint(listen), uri=parse_uri("qemu+ssh://root@10.0.0.7/system"))
        assert (target.kind, target.host) == ("tcp", "10.0.0.7")


def test_any_address_on_a_local_host_is_loopback(console_host, alice):
    data = console_ticket_take(token=console_ticket_issue(user=alice, vm=vm(ANY_PASSWORD)).token)
    assert (data.target.kind, data.target.host, data.target.port) == ("tcp", "127.0.0.1", 5912)


def test_a_specific_address_is_used_as_it_is():
    target = console_target(endpoint("10.1.2.3"), uri=parse_uri("qemu+tls://kvm7.example.com/system"))
    assert (target.kind, target.host) == ("tcp", "10.1.2.3")


def test_loopback_vnc_on_a_remote_ssh_host_goes_through_an_ssh_tunnel():
    uri = parse_uri("qemu+ssh://admin@kvm7.example.com:2222/system?keyfile=/etc/virtfleet/id&no_verify=1")
    target = console_target(endpoint("127.0.0.1", 5907), uri=uri)
    assert (target.kind, target.host, target.port) == ("ssh", "127.0.0.1", 5907)
    assert target.ssh.host == "kvm7.example.com" and target.ssh.port == 2222 and target.ssh.user == "admin"
    assert target.ssh.keyfile == "/etc/virtfleet/id" and target.ssh.no_verify
    # the host's registered key file wins over the URI's
    assert console_target(endpoint(), uri=uri, ssh_key_path="/keys/k").ssh.keyfile == "/keys/k"
    argv = ssh_command(target.ssh, host=target.host, port=target.port, timeout=5)
    assert argv[0] == "/usr/bin/ssh" and argv[-4:] == ["-W", "127.0.0.1:5907", "--", "kvm7.example.com"]
    assert "UserKnownHostsFile=/dev/null" in argv and argv[argv.index("-i") : argv.index("-i") + 2] == [
        "-i",
        "/etc/virtfleet/id",
    ]
    # a URI's command= (another ssh client) is what the tunnel runs, as libvirt itself does
    custom = console_target(endpoint("127.0.0.1", 5907), uri=parse_uri(f"{uri.uri}&command=/opt/ssh-wrapper"))
    assert ssh_command(custom.ssh, host="127.0.0.1", port=5907, timeout=5)[0] == "/opt/ssh-wrapper"


def test_loopback_vnc_on_a_remote_non_ssh_host_is_refused_saying_why():
    with pytest.raises(ConsoleUnavailable) as err:
        console_target(endpoint("127.0.0.1"), uri=parse_uri("qemu+tcp://kvm7.example.com/system"))
    assert err.value.reason == "loopback_remote"
    assert "loopback" in err.value.message and "qemu+ssh" in err.value.hint


def test_loopback_vnc_of_a_host_on_this_machine_is_reached_directly():
    target = console_target(endpoint("127.0.0.1", 5931), uri=parse_uri("qemu+tcp://127.0.0.1:16509/system"))
    assert (target.kind, target.host, target.port) == ("tcp", "127.0.0.1", 5931)


def test_unix_socket_only_for_local_hosts(console_host, alice):
    data = console_ticket_take(token=console_ticket_issue(user=alice, vm=vm(SOCKET)).token)
    assert (data.target.kind, data.target.path) == ("unix", "/run/libvirt/qemu/vnc-socket.vnc")
    sock_endpoint = ConsoleEndpoint(
        state=PowerState.RUNNING, graphics=("vnc",), listen_type="socket", socket="/run/x.vnc"
    )
    with pytest.raises(ConsoleUnavailable) as err:
        console_target(sock_endpoint, uri=parse_uri("qemu+ssh://root@kvm7/system"))
    assert err.value.reason == "remote_socket"


def test_listen_type_none_and_missing_port_are_refused():
    none = ConsoleEndpoint(state=PowerState.RUNNING, graphics=("vnc",), listen_type="none")
    with pytest.raises(ConsoleUnavailable) as err:
        console_target(none, uri=parse_uri("qemu:///system"))
    assert err.value.reason == "not_listening"
    with pytest.raises(ConsoleUnavailable) as err:
        console_target(endpoint(port=None), uri=parse_uri("qemu:///system"))
    assert err.value.reason == "no_port"


def test_endpoint_from_live_xml_with_listen_elements_and_password():
    xml = """<domain><devices>
      <graphics type='spice' port='5930'/>
      <graphics type='vnc' port='5901' autoport='yes' listen='0.0.0.0' passwd='pw'>
        <listen type='network' address='192.168.122.1' network='default'/>
      </graphics></devices></domain>"""
    ep = graphics_endpoint_from_xml(xml, state=PowerState.PAUSED)
    assert (ep.graphics, ep.listen, ep.listen_type, ep.port, ep.password) == (
        ("spice", "vnc"), "192.168.122.1", "network", 5901, "pw",
    )  # fmt: skip
    assert "pw" not in repr(ep)


# --- session records ---------------------------------------------------------------------------------------
def test_session_is_recorded_when_opened_and_closed(console_host, alice):
    data = console_connect_authorize(token=console_ticket_issue(user=alice, vm=vm(LOOPBACK)).token, user=alice)
    session = console_session_open(ticket=data, user=alice, client_address="127.0.0.1")
    assert session.is_open and session.username == "alice" and session.vm_name == "vnc-loopback"
    console_session_close(session=session, reason="closed by the browser (code 1000)", bytes_in=1234, bytes_out=56)
    session.refresh_from_db()
    assert not session.is_open and session.bytes_in == 1234
    assert list(console_sessions(vm_uuid=LOOPBACK)) == [session]
    assert ConsoleSession.objects.count() == 1


# --- who may open a console ------------------------------------------------------------------------------------
def test_a_viewer_gets_no_ticket_and_the_refusal_is_recorded(console_host, make_user):
    from audit.models import AuditEvent

    viewer = make_user("vic", "viewer")
    with pytest.raises(Forbidden) as err:
        console_ticket_issue(user=viewer, vm=vm(LOOPBACK))
    assert "open the console of VM vnc-loopback" in err.value.message
    event = AuditEvent.objects.get(action="console.ticket")
    assert (event.outcome, event.username, event.vm_name) == ("refused", "vic", "vnc-loopback")


def test_a_user_with_one_vms_console_gets_tickets_for_that_vm_only(console_host, make_user):
    from guardian.shortcuts import assign_perm

    vera = make_user("vera")
    assign_perm("vms.console_vm", vera, vm(LOOPBACK))
    assert console_ticket_issue(user=vera, vm=vm(LOOPBACK)).token
    with pytest.raises(Forbidden) as err:
        console_ticket_issue(user=vera, vm=vm(ANY_PASSWORD))
    assert err.value.message == "You may not see this VM: ask an administrator for access to it or its host."


def test_a_ticket_is_refused_when_its_owner_lost_the_right_before_using_it(console_host, make_user):
    from guardian.shortcuts import assign_perm, remove_perm

    vera = make_user("vera")
    assign_perm("hosts.console_vms", vera, console_host)
    ticket = console_ticket_issue(user=vera, vm=vm(LOOPBACK))
    remove_perm("hosts.console_vms", vera, console_host)
    from core import access

    access.forget(vera)
    with pytest.raises(TicketRefused) as err:
        console_connect_authorize(token=ticket.token, user=vera)
    assert (err.value.reason, err.value.refusal.code) == ("forbidden", 4403)


def test_console_sessions_are_in_the_audit_log_with_how_they_ended(console_host, alice, on_commit):
    from audit.models import AuditEvent

    data = console_connect_authorize(token=console_ticket_issue(user=alice, vm=vm(LOOPBACK)).token, user=alice)
    with on_commit():  # the proxy runs in autocommit: each record is written at once
        session = console_session_open(ticket=data, user=alice, client_address="192.0.2.9")
        console_session_close(session=session, reason="closed by the browser (code 1000)", bytes_in=10, bytes_out=2)
    opened, closed = AuditEvent.objects.filter(action__startswith="console.").order_by("pk")
    assert (opened.action, opened.username, opened.ip, opened.vm_name, opened.host_name) == (
        "console.open", "alice", "192.0.2.9", "vnc-loopback", "console-host",
    )  # fmt: skip
    assert (closed.action, closed.outcome, closed.ip) == ("console.close", "ok", "192.0.2.9")
    assert "closed by the browser" in closed.message and closed.details["bytes_in"] == 10
    assert "seconds" in closed.details


def test_refused_console_connections_are_in_the_audit_log(console_host, alice, bob):
    from audit.models import AuditEvent
    from console.services import console_refused

    ticket = console_ticket_issue(user=alice, vm=vm(LOOPBACK))
    with pytest.raises(TicketRefused) as err:
        console_connect_authorize(token=ticket.token, user=bob)
    console_refused(reason=err.value.reason, message=err.value.message, user=bob, token_owner=err.value.owner,
                    vm_uuid=err.value.vm_uuid, client_address="198.51.100.4")  # fmt: skip
    event = AuditEvent.objects.get(action="console.open")
    assert (event.outcome, event.username, event.ip, event.vm_name) == (
        "refused",
        "bob",
        "198.51.100.4",
        "vnc-loopback",
    )
    assert event.details == {"reason": "other_user", "ticket_owner": alice.pk}
