import email
import io
import time
import warnings

import pycdlib
import pytest
import yaml

from virt.seed import (
    CLOUD_CONFIG,
    MAX_BYTES,
    MIME,
    SCRIPT,
    SUDO,
    CloudInit,
    build_user_data,
    check_hostname,
    check_network_config,
    check_password_hash,
    check_user_data,
    hash_password,
    instance_id,
    meta_data,
    nocloud_iso,
    user_data_type,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0ZXN0a2V5YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh alice@laptop"
KEY_B = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb bob@desk"
# a fixed hash (of "correct horse"), so outputs can be compared exactly
HASH = crypt.crypt("correct horse", "$6$saltsaltsaltsalt")


def read_iso(data: bytes) -> pycdlib.PyCdlib:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    return iso


def file_of(iso: pycdlib.PyCdlib, **path: str) -> str:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue().decode()


def cloud_config(text: str) -> dict:
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


# --- the ISO --------------------------------------------------------------------------------------
def test_the_iso_is_a_cidata_volume_with_the_three_files_under_their_real_names():
    ci = CloudInit(hostname="web-1", instance_id="iid-1234", network_config="version: 2\nethernets: {}\n")
    iso = read_iso(nocloud_iso(ci))
    try:
        assert iso.pvd.volume_identifier.decode().rstrip() == "cidata"
        assert iso.joliet_vd.volume_identifier.decode("utf-16-be").rstrip() == "cidata"
        assert iso.has_rock_ridge() and iso.has_joliet()
        rr_names = sorted(c.rock_ridge.name().decode() for c in iso.list_children(rr_path="/") if c.is_file())
        joliet = sorted(c.file_identifier().decode("utf-16-be").rstrip(";1") for c in iso.list_children(joliet_path="/")
                        if c.is_file())  # fmt: skip
        assert rr_names == joliet == ["meta-data", "network-config", "user-data"]
        expected = {"meta-data": meta_data(ci), "user-data": build_user_data(ci), "network-config": ci.network_config}
        for name, content in expected.items():
            assert file_of(iso, rr_path=f"/{name}") == content
            assert file_of(iso, joliet_path=f"/{name}") == content
        assert file_of(iso, rr_path="/meta-data") == "instance-id: iid-1234\nlocal-hostname: web-1\n"
        assert file_of(iso, rr_path="/user-data") == "#cloud-config\nhostname: web-1\n"
        # plain ISO 9660 readers get 8.3 names, as genisoimage makes them
        plain = sorted(c.file_identifier().decode() for c in iso.list_children(iso_path="/") if c.is_file())
        assert plain == ["META_DAT.;1", "NETWORK_.;1", "USER_DAT.;1"]
        record = iso.get_record(rr_path="/user-data")
        assert record.rock_ridge.get_file_mode() == 0o100444
    finally:
        iso.close()


def test_without_network_config_there_is_no_such_file():
    iso = read_iso(nocloud_iso(CloudInit(instance_id="iid-1")))
    try:
        names = sorted(c.rock_ridge.name().decode() for c in iso.list_children(rr_path="/") if c.is_file())
        assert names == ["meta-data", "user-data"]
        assert file_of(iso, rr_path="/user-data") == "#cloud-config\n"
    finally:
        iso.close()


def test_the_same_seed_gives_the_same_bytes_whatever_the_clock_says(monkeypatch):
    ci = CloudInit(hostname="db", user="ops", ssh_keys=(KEY_A,), user_data="#!/bin/sh\necho hi\n")
    first = nocloud_iso(ci)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400 * 400 + 3661.5)
    assert nocloud_iso(ci) == first
    assert nocloud_iso(CloudInit(hostname="db2")) != first


def test_the_plain_password_is_nowhere_in_the_iso():
    password = "Tr0ub4dor&3-unique"
    ci = CloudInit(hostname="web", user="alice", password_hash=hash_password(password), ssh_keys=(KEY_A,))
    data = nocloud_iso(ci)
    for encoding in ("utf-8", "utf-16-be", "utf-16-le"):
        assert password.encode(encoding) not in data
    assert ci.password_hash.encode() in data  # the hash is what travels


def test_a_plain_password_given_as_the_hash_is_refused():
    with pytest.raises(ValueError, match="never the password"):
        nocloud_iso(CloudInit(password_hash="hunter22"))


def test_bad_content_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"line 3, column 1: .* \(while parsing a flow sequence at line 2, column 8\)"):
        nocloud_iso(CloudInit(user_data="#cloud-config\nusers: [a\n"))
    with pytest.raises(ValueError, match="version"):
        nocloud_iso(CloudInit(network_config="ethernets: {}\n"))


# --- meta-data --------------------------------------------------------------------------------------
def test_meta_data_has_the_instance_id_and_host_name():
    assert meta_data(CloudInit(instance_id="iid-abc", hostname="web.example.org")) == (
        "instance-id: iid-abc\nlocal-hostname: web.example.org\n"
    )
    assert meta_data(CloudInit(instance_id="iid-abc")) == "instance-id: iid-abc\n"


def test_without_an_instance_id_one_is_derived_from_the_content():
    a = CloudInit(hostname="a")
    assert instance_id(a) == instance_id(CloudInit(hostname="a"))
    assert instance_id(a) != instance_id(CloudInit(hostname="b"))
    assert instance_id(a).startswith("iid-")
    assert yaml.safe_load(meta_data(a))["instance-id"] == instance_id(a)


# --- user-data: merges ---------------------------------------------------------------------------------
def test_nothing_given_is_an_empty_cloud_config():
    assert build_user_data(CloudInit()) == "#cloud-config\n"


def test_a_host_name_alone():
    assert build_user_data(CloudInit(hostname="web-1")) == "#cloud-config\nhostname: web-1\n"
    cfg = cloud_config(build_user_data(CloudInit(hostname="web-1.lab.example")))
    assert cfg == {"hostname": "web-1", "fqdn": "web-1.lab.example"}


def test_keys_only_go_to_the_default_user():
    text = build_user_data(CloudInit(ssh_keys=(KEY_A, f"  {KEY_B}\n")))
    assert cloud_config(text) == {"ssh_authorized_keys": [KEY_A, KEY_B]}
    assert "ssh_pwauth" not in text


def test_a_password_only_goes_to_the_default_user_and_allows_ssh_passwords():
    cfg = cloud_config(build_user_data(CloudInit(password_hash=HASH)))
    assert cfg == {"password": HASH, "chpasswd": {"expire": False}, "ssh_pwauth": True}


def test_a_named_user_keeps_the_default_user_and_gets_sudo_keys_and_password():
    text = build_user_data(CloudInit(hostname="web", user="alice", password_hash=HASH, ssh_keys=(KEY_A,)))
    assert text == (
        "#cloud-config\n"
        "hostname: web\n"
        "users:\n"
        "- default\n"
        "- name: alice\n"
        f"  sudo: {SUDO}\n"
        "  ssh_authorized_keys:\n"
        f"  - {KEY_A}\n"
        f"  passwd: {HASH}\n"
        "  lock_passwd: false\n"
        "ssh_pwauth: true\n"
    )
    assert yaml.safe_load(text)["users"][1]["passwd"] == HASH  # the $ survive unquoted


def test_a_named_user_with_keys_only_stays_password_locked():
    cfg = cloud_config(build_user_data(CloudInit(user="ops", ssh_keys=(KEY_A,))))
    assert cfg == {"users": ["default", {"name": "ops", "sudo": SUDO, "ssh_authorized_keys": [KEY_A]}]}


def test_the_users_own_yaml_wins_and_its_lists_are_extended():
    own = (
        "#cloud-config\n"
        "# my comment\n"
        "hostname: mine\n"
        "users:\n"
        "  - default\n"
        "  - name: carol\n"
        "packages: [htop, git]\n"
        "ssh_authorized_keys:\n"
        f"  - {KEY_B}\n"
    )
    ci = CloudInit(hostname="form-name.example", user="alice", ssh_keys=(KEY_A,), user_data=own)
    cfg = cloud_config(build_user_data(ci))
    assert cfg["hostname"] == "mine" and "fqdn" not in cfg
    assert cfg["users"] == [
        "default",
        {"name": "carol"},
        {"name": "alice", "sudo": SUDO, "ssh_authorized_keys": [KEY_A]},
    ]
    assert cfg["packages"] == ["htop", "git"]
    assert cfg["ssh_authorized_keys"] == [KEY_B]  # the named user got the form's key, not the default user


def test_a_users_list_without_default_is_not_given_one():
    own = "#cloud-config\nusers:\n  - name: carol\n"
    cfg = cloud_config(build_user_data(CloudInit(user="alice", user_data=own)))
    assert [u if isinstance(u, str) else u["name"] for u in cfg["users"]] == ["carol", "alice"]


def test_the_same_user_in_the_users_yaml_is_merged_not_doubled():
    own = f"#cloud-config\nusers:\n- default\n- name: alice\n  sudo: false\n  ssh_authorized_keys: [{KEY_B}]\n"
    cfg = cloud_config(
        build_user_data(CloudInit(user="alice", password_hash=HASH, ssh_keys=(KEY_A, KEY_B), user_data=own))
    )
    assert cfg["users"] == [
        "default",
        {"name": "alice", "sudo": False, "ssh_authorized_keys": [KEY_B, KEY_A], "passwd": HASH, "lock_passwd": False},
    ]


def test_the_users_password_and_pwauth_choices_win():
    own = "#cloud-config\npassword: $6$x\nchpasswd:\n  expire: true\nssh_pwauth: false\n"
    cfg = cloud_config(build_user_data(CloudInit(password_hash=HASH, user_data=own)))
    assert cfg["password"] == "$6$x" and cfg["chpasswd"] == {"expire": True} and cfg["ssh_pwauth"] is False


def test_with_nothing_to_add_the_users_text_is_kept_as_typed():
    own = "#cloud-config\n# keep me\npackages: [htop]\n"
    assert build_user_data(CloudInit(user_data=own)) == own
    script = "#!/bin/bash\necho hello\n"
    assert build_user_data(CloudInit(user_data=script)) == script


def test_the_output_is_block_style_yaml():
    own = "#cloud-config\nwrite_files: [{path: /etc/motd, content: hi, permissions: '0644'}]\nruncmd: [[ls, -l]]\n"
    text = build_user_data(CloudInit(hostname="h", user="u", ssh_keys=(KEY_A,), user_data=own))
    assert "{" not in text and "[" not in text
    cfg = cloud_config(text)
    assert cfg["write_files"] == [{"path": "/etc/motd", "content": "hi", "permissions": "0644"}]
    assert cfg["runcmd"] == [["ls", "-l"]]
    assert KEY_A in text.splitlines()[-1] or any(line.endswith(KEY_A) for line in text.splitlines())


def test_a_script_gets_a_multipart_with_the_additions_beside_it():
    script = "#!/bin/sh\necho 'héllo'\n"
    ci = CloudInit(hostname="web", ssh_keys=(KEY_A,), user_data=script)
    text = build_user_data(ci)
    assert text == build_user_data(ci)  # the boundary comes from the content
    assert user_data_type(text) == MIME
    assert check_user_data(text) == ""
    msg = email.message_from_string(text)
    assert msg.get_content_type() == "multipart/mixed" and msg["MIME-Version"] == "1.0"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == [SCRIPT, CLOUD_CONFIG]
    assert parts[0].get_payload(decode=True).decode(parts[0].get_content_charset()) == script
    ours = cloud_config(parts[1].get_payload(decode=True).decode())
    assert ours["hostname"] == "web" and ours["ssh_authorized_keys"] == [KEY_A]
    assert {m["name"] for m in ours["merge_how"]} == {"list", "dict"}


@pytest.mark.parametrize(
    ("user_data", "kind"),
    [
        ("#include\nhttps://example.org/cfg\n", "text/x-include-url"),
        ("#cloud-boothook\n#!/bin/sh\necho early\n", "text/cloud-boothook"),
        ("## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n", "text/jinja2"),
    ],
)
def test_other_formats_also_get_a_multipart(user_data, kind):
    msg = email.message_from_string(build_user_data(CloudInit(user="ops", user_data=user_data)))
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == [kind, CLOUD_CONFIG]
    assert parts[0].get_payload() == user_data


def test_a_users_multipart_gets_our_part_appended():
    own = (
        'Content-Type: multipart/mixed; boundary="XYZ"\nMIME-Version: 1.0\n\n'
        "--XYZ\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho one\n\n--XYZ--\n"
    )
    assert check_user_data(own) == ""
    msg = email.message_from_string(build_user_data(CloudInit(hostname="h", user_data=own)))
    assert msg.get_boundary() == "XYZ"
    assert [p.get_content_type() for p in msg.get_payload()] == [SCRIPT, CLOUD_CONFIG]


# --- checks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        "#cloud-config\n",
        "#cloud-config\npackages: [htop]\n",
        "#!/bin/bash\nset -e\n",
        "#include\nhttps://example.org/a\n",
        "#cloud-boothook\necho hi\n",
        "## template: jinja\n#cloud-config\nhostname: x\n",
        "#cloud-config-archive\n- type: text/cloud-config\n  content: 'a: b'\n",
        'Content-Type: multipart/mixed; boundary="b"\nMIME-Version: 1.0\n\n--b\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n--b--\n',
    ],
)
def test_user_data_cloud_init_takes(text):
    assert check_user_data(text) == ""


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("#cloud-config\npackages:\n  - htop\n bad: indent\n", "line 4, column 2"),
        ("#cloud-config\nusers: [alice\nruncmd: []\n", "line 3"),
        (
            "#cloud-config\nwrite_files:\n\t- path: /x\n",
            "line 3, column 1: found character '\\t' that cannot start any token; YAML indents with spaces",
        ),
        ("#cloud-config\n- a\n- b\n", "must be a YAML mapping"),
        (
            "#cloud-config\nusers: 3\n",
            "users: in the #cloud-config must be a list or a string or a mapping, not a number",
        ),
        (
            "#cloud-config\nssh_authorized_keys: {a: b}\n",
            "ssh_authorized_keys: in the #cloud-config must be a list or a string",
        ),
        ("#cloud-config\nusers: [[a]]\n", "each entry of users:"),
        ("packages: [htop]\n", "does not know user-data starting with 'packages: [htop]'"),
        ("cloud-config\n", "start it with #cloud-config"),
        ("## template: jinja\nhostname: x\n", "the second line"),
        ('Content-Type: multipart/mixed; boundary="b"\n\n--b\n--b--\n', "MIME-Version"),
        ("#!/bin/sh\n" + "#" * MAX_BYTES, "at most 64 KiB"),
    ],
)
def test_user_data_cloud_init_would_not_take_says_why(text, reason):
    assert reason in check_user_data(text)


def test_the_size_limit_counts_utf8_bytes():
    assert check_user_data("#!/bin/sh\n" + "#" * (MAX_BYTES - 10)) == ""
    assert "65546 bytes" in check_user_data("#!/bin/sh\n" + "é" * ((MAX_BYTES - 10) // 2 + 5))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n",
        "network:\n  version: 2\n  ethernets:\n    id0:\n      match: {macaddress: '52:54:00:12:34:56'}\n      addresses: [10.0.0.5/24]\n",
        "version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets:\n      - type: dhcp\n",
        "network:\n  version: 1\n  config: []\n",
        '{"version": 2, "ethernets": {}}',  # JSON is YAML
    ],
)
def test_network_config_cloud_init_takes(text):
    assert check_network_config(text) == ""


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ethernets:\n  eth0: {dhcp4: true}\n", "has no version"),
        ("version: 3\n", "version must be 1 or 2, not 3"),
        ("version: '2'\n", "not '2'"),
        ("version: true\n", "not True"),
        ("version: 1\n", "needs a config: list"),
        ("version: 2\nethernets: [eth0]\n", "ethernets: in a version 2 network-config must be a mapping"),
        ("- version: 2\n", "must be a YAML mapping"),
        ("network: 2\n", "must be a YAML mapping with a version: key, not a number"),
        ("version: 2\nethernets:\n  eth0:\n    dhcp4: true\n   addresses: []\n", "line 5, column 4"),
        ("version: 2\n# " + "x" * MAX_BYTES, "at most 64 KiB"),
    ],
)
def test_network_config_cloud_init_would_not_take_says_why(text, reason):
    assert reason in check_network_config(text)


def test_user_data_types_follow_cloud_inits_markers():
    assert user_data_type("#cloud-config-archive\n- a\n") == "text/cloud-config-archive"
    assert user_data_type("  #Cloud-Config\n") == CLOUD_CONFIG
    assert user_data_type("MIME-Version: 1.0\nContent-Type: multipart/mixed\n") == MIME
    assert user_data_type("plain words") == ""


# --- passwords and names -------------------------------------------------------------------------------
def test_hash_password_makes_a_salted_sha512_crypt_hash():
    first = hash_password("s3cret pass")
    assert first.startswith("$6$") and check_password_hash(first) == ""
    assert crypt.crypt("s3cret pass", first) == first
    assert crypt.crypt("other", first) != first
    assert hash_password("s3cret pass") != first  # a new salt each time
    with pytest.raises(ValueError):
        hash_password("")


def test_hash_password_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hash_password("x")


@pytest.mark.parametrize("text", ["", "hunter2", "$1$abc$def", "$y$j9T$abc$def", "$6$salt$short", HASH + "x"])
def test_only_sha512_hashes_pass(text):
    assert check_password_hash(text) != ""


def test_host_names():
    assert check_hostname("web-1") == check_hostname("web-1.lab.example.org") == check_hostname("a.b.") == ""
    assert "empty" in check_hostname("")
    assert "'-web'" in check_hostname("-web")
    assert "'a_b'" in check_hostname("a_b.example")
    assert check_hostname("x" * 64) != "" and check_hostname("x" * 63) == ""
    assert "253" in check_hostname(".".join(["abcdefgh"] * 30))
