import pytest

from virt import InvalidURI, parse_uri


@pytest.mark.parametrize(
    "uri",
    [
        "qemu:///system",
        "qemu+ssh://root@kvm-07.example.com/system",
        "qemu+ssh://root@10.0.0.5:2222/system?keyfile=/root/.ssh/id_ed25519&no_verify=1",
        "qemu+tls://kvm.example.com/system",
        "qemu+tcp://127.0.0.1:16509/system",
        "qemu+tcp://[::1]:16509/system",
        "qemu+unix:///system?socket=/var/run/libvirt/libvirt-sock",
        "test:///default",
        "test:///tmp/node.xml",
        "test+tcp://127.0.0.1:16600/default",
    ],
)
def test_valid_uris_are_accepted(uri):
    assert parse_uri(uri).uri == uri


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("kvm-07.example.com", "no scheme"),
        ("http://kvm-07/system", "unknown hypervisor driver 'http'"),
        ("qemu+carrierpigeon://host/system", "unknown transport 'carrierpigeon'"),
        ("qemu+ssh:///system", "needs a host"),
        ("qemu+tcp://host:99999/system", "out of range"),
        ("qemu+tcp://host:abc/system", "not a valid URI"),
        ("qemu+ssh://bad_host!/system", "not a valid host name"),
        ("qemu+ssh://root:hunter2@host/system", "do not put a password"),
        ("qemu+tcp://host/wrong", "ends in /system or /session"),
        ("qemu+tcp://host/system?evil=1", "unknown URI parameter 'evil'"),
        ("qemu+unix://host/system", "unix transport is local"),
        ("qemu+tcp://host/system with space", "spaces"),
        ("test:///relative.txt", "test:///default"),
        ("qemu+ssh://" + "a" * 2000 + "/system", "longer than"),
    ],
)
def test_bad_uris_say_what_is_wrong(uri, says):
    with pytest.raises(InvalidURI) as exc:
        parse_uri(uri)
    assert says in str(exc.value)
    assert "qemu+ssh://" in exc.value.hint  # and show what a good URI looks like


def test_ssh_keyfile_is_added_without_overriding_an_explicit_one():
    parsed = parse_uri("qemu+ssh://root@host/system")
    assert parsed.with_params(keyfile="/k") == "qemu+ssh://root@host/system?keyfile=/k"
    explicit = parse_uri("qemu+ssh://root@host/system?keyfile=/mine")
    assert "keyfile=/mine" in explicit.with_params(keyfile="/k")


def test_remote_default_ports():
    assert parse_uri("qemu+tcp://h/system").effective_port == 16509
    assert parse_uri("qemu+tls://h/system").effective_port == 16514
    assert parse_uri("qemu+ssh://h/system").effective_port == 22
    assert parse_uri("qemu:///system").effective_port is None
