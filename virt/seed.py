"""Cloud-init NoCloud seeds, built in Python: the user-data, meta-data and network-config a new VM's
cloud-init reads on its first boot, and the small ISO 9660 disk labelled "cidata" that carries them
(what cloud-localds and virt-install --cloud-init make with an ISO tool; here without one).

The operator's own user-data stays theirs: the form's host name, user, SSH keys and password are
added to it (a #cloud-config is merged, anything else gets a MIME multipart beside it), and on every
key their YAML sets, their value wins. Passwords only ever travel as SHA-512 crypt hashes.
"""

from __future__ import annotations

import email
import hashlib
import io
import json
import re
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from types import ModuleType
from typing import Any

import pycdlib
import yaml
from pycdlib.dates import DirectoryRecordDate, VolumeDescriptorDate

from .errors import OperationUnsupported

# 64 KiB of UTF-8 for user-data and for network-config. NoCloud itself has no limit (cloud-init
# reads the whole file off the ISO), but the text is kept in the database and edited in a form;
# 64 KiB is what OpenStack and Azure accept, so user-data written for those clouds (and for EC2,
# whose limit is 16 KiB) fits here too, while pasting a disk image by mistake does not.
MAX_BYTES = 64 * 1024
SEED_LABEL = "cidata"  # the volume identifier NoCloud looks for
# Like the default user of the cloud images (ubuntu, fedora, debian...): a user made from the form is
# the one way in, and one without a password (keys only) could not use sudo otherwise.
SUDO = "ALL=(ALL) NOPASSWD:ALL"

CLOUD_CONFIG = "text/cloud-config"
SCRIPT = "text/x-shellscript"
JINJA = "text/jinja2"
MIME = "multipart/mixed"
# cloud-init's own first-line markers (cloudinit.handlers.INCLUSION_TYPES_MAP), matched like it
# does: case-insensitively, after leading whitespace, the longest marker first.
FORMATS = {
    "#cloud-config-archive": "text/cloud-config-archive",
    "#cloud-config-jsonp": "text/cloud-config-jsonp",
    "#cloud-config": CLOUD_CONFIG,
    "#cloud-boothook": "text/cloud-boothook",
    "#include-once": "text/x-include-once-url",
    "#include": "text/x-include-url",
    "#part-handler": "text/part-handler",
    "## template: jinja": JINJA,
    "#!": SCRIPT,
}
_MIME_HEADERS = ("content-type:", "mime-version:")
_SHA512_HASH = re.compile(r"\$6\$(rounds=\d+\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}")
_HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)
# Our cloud-config part of a multipart merges into what the user's parts set without replacing any
# of it, lists appended: the same rule as merging into a #cloud-config here.
_MERGE_HOW = [{"name": "list", "settings": ["append"]}, {"name": "dict", "settings": ["no_replace", "recurse_list"]}]
# Every timestamp on the ISO (volume descriptors, directory records, Rock Ridge TF) is this one, so
# the same seed makes the same bytes: 1980-01-01 00:00 UTC, the epoch reproducible archives use.
_PINNED_DATE = (1980, 1, 1, 0, 0, 0)
# instance-id when the caller gives none: derived from the seed's content, never random.
_IID_NAMESPACE = uuid.UUID("7c1d3f0e-5b8a-4e49-9a51-3f3c2d6e9b10")


@dataclass(frozen=True)
class CloudInit:
    """What a new VM's cloud-init is told. Everything is optional; "" and () mean "not given"."""

    hostname: str = ""  # short or fully qualified; also meta-data's local-hostname
    user: str = ""  # "" → no user entry added: keys and password go to the image's default user
    password_hash: str = ""  # a crypt(3) SHA-512 hash ("$6$..."), never plain text (see hash_password)
    ssh_keys: tuple[str, ...] = ()
    user_data: str = ""  # the user's own user-data (#cloud-config, a script, #include, a MIME multipart...)
    network_config: str = ""  # network-config v1/v2 YAML ("" → cloud-init's default: DHCP on the first NIC)
    instance_id: str = ""  # "" → derived from the rest, see instance_id() (callers normally pass "iid-<uuid>")


# --- passwords --------------------------------------------------------------------------------------
def _crypt() -> ModuleType | None:
    # crypt is deprecated (PEP 594) and gone in Python 3.13; until then it is the one SHA-512 crypt
    # in the standard library, and writing one by hand is not worth the risk.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            return None
    return crypt


def hash_password(password: str) -> str:
    """A SHA-512 crypt(3) hash of ``password`` with a random salt: what /etc/shadow, useradd -p and
    cloud-init's ``passwd``/``password`` take. Raises OperationUnsupported where this Python has no
    crypt module or the system's libcrypt cannot make SHA-512 hashes."""
    if not password:
        raise ValueError("an empty password cannot be hashed")
    crypt = _crypt()
    if crypt is None:
        raise OperationUnsupported(
            "this Python has no crypt module (removed in Python 3.13), so passwords cannot be hashed here",
            hint="give a SHA-512 hash instead, made with `openssl passwd -6` or `mkpasswd -m sha-512`.",
        )
    if crypt.METHOD_SHA512 not in crypt.methods:
        raise OperationUnsupported("the system's crypt(3) cannot make SHA-512 hashes")
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    if not hashed or check_password_hash(hashed):
        raise OperationUnsupported("the system's crypt(3) did not return a SHA-512 hash")
    return hashed


def check_password_hash(text: str) -> str:
    """Why ``text`` is not a SHA-512 crypt hash, or "" when it is. Only SHA-512: cloud-init takes any
    other string given as a default user's ``password`` (a yescrypt "$y$" hash too) for the password
    itself."""
    if _SHA512_HASH.fullmatch(text or ""):
        return ""
    return "not a SHA-512 crypt hash ($6$salt$hash, as `openssl passwd -6` makes)"


def check_hostname(name: str) -> str:
    """Why ``name`` is not a valid host name, or "" when it is: RFC 1123 labels of at most 63
    characters (what a Linux guest takes as its name), at most 253 in all."""
    if not name:
        return "the host name is empty"
    if len(name) > 253:
        return "a host name has at most 253 characters"
    for label in name.rstrip(".").split("."):
        if not _HOST_LABEL.fullmatch(label):
            return (f"{label!r} is not a valid host name label: 1 to 63 letters, digits and hyphens, "
                    "not starting or ending with a hyphen")  # fmt: skip
    return ""


# --- checks -------------------------------------------------------------------------------------------
def user_data_type(text: str) -> str:
    """The MIME type cloud-init gives ``text`` by its first line (CLOUD_CONFIG, SCRIPT, ...; MIME for a
    MIME message), "" when it is none cloud-init knows (it would ignore such user-data)."""
    head = text.lstrip().lower()
    if head.startswith(_MIME_HEADERS):
        return MIME
    for marker, kind in FORMATS.items():  # longest first: #cloud-config-archive before #cloud-config
        if head.startswith(marker):
            return kind
    return ""


def _first_line(text: str) -> str:
    stripped = text.lstrip()
    line = stripped.splitlines()[0] if stripped else ""
    return line if len(line) <= 40 else line[:40] + "…"


def _size_reason(what: str, text: str) -> str:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        return f"{what} is {size} bytes; at most {MAX_BYTES // 1024} KiB is accepted"
    return ""


def _at(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _load_yaml(what: str, text: str) -> tuple[Any, str]:
    """The YAML's value and "" or (None, the reason with the line and column, 1-based, of the text)."""
    try:
        return yaml.safe_load(text), ""
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = f"{what} is not valid YAML{_at(mark)}: {exc.problem or exc.context or 'invalid YAML'}"
        if exc.problem and exc.context and exc.context_mark is not None:
            # where the unfinished thing began, often the line to fix: "while parsing a flow sequence"
            reason += f" ({exc.context}{_at(exc.context_mark)})"
        if "'\\t'" in reason:
            reason += "; YAML indents with spaces, never tabs"
        return None, reason
    except (yaml.YAMLError, RecursionError) as exc:
        return None, f"{what} is not valid YAML: {exc}"


def _kind_of(value: Any) -> str:
    kinds = ((bool, "true/false"), (int | float, "a number"), (str, "a string"), (list, "a list"), (dict, "a mapping"))
    found = next((name for kind, name in kinds if isinstance(value, kind)), "")
    return found or ("nothing" if value is None else f"a {type(value).__name__}")


def _cloud_config_reason(text: str) -> str:
    cfg, reason = _load_yaml("the #cloud-config", text)
    if reason:
        return reason
    if cfg is None:
        return ""
    if not isinstance(cfg, dict):
        return f"a #cloud-config must be a YAML mapping (key: value lines), not {_kind_of(cfg)}"
    # the keys merge_into reads: a shape it cannot extend is refused here, not mangled there
    shapes = {"users": (list, str, dict), "ssh_authorized_keys": (list, str), "chpasswd": (dict,)}
    for key, types in shapes.items():
        if key in cfg and cfg[key] is not None and not isinstance(cfg[key], types):
            wanted = " or ".join({list: "a list", str: "a string", dict: "a mapping"}[t] for t in types)
            return f"{key}: in the #cloud-config must be {wanted}, not {_kind_of(cfg[key])}"
    users = cfg.get("users")
    if isinstance(users, list) and any(not isinstance(u, str | dict) for u in users):
        return "each entry of users: must be a name or a mapping with a name:"
    return ""


def _mime_reason(text: str) -> str:
    msg = email.message_from_string(text.lstrip())
    if msg.get("MIME-Version") is None:
        # cloud-init only parses user-data as MIME when it has this header in its first 4 KiB
        return "a MIME user-data needs a MIME-Version: 1.0 header"
    if msg.defects:
        return f"the MIME message is malformed: {msg.defects[0].__class__.__name__}"
    return ""


def check_user_data(text: str) -> str:
    """Why cloud-init cannot take ``text`` as user-data, in plain words, or "" when it can (or it is
    empty): too big, a first line cloud-init does not know, a #cloud-config that is not a YAML
    mapping (YAML errors with their line and column), a MIME message cloud-init would not parse."""
    if not text.strip():
        return ""
    reason = _size_reason("the user-data", text)
    if reason:
        return reason
    kind = user_data_type(text)
    if not kind:
        return (f"cloud-init does not know user-data starting with {_first_line(text)!r}: start it with "
                "#cloud-config, a script's #!, #include, #cloud-boothook, ## template: jinja "
                "or a MIME multipart (Content-Type: multipart/mixed)")  # fmt: skip
    if kind == CLOUD_CONFIG:
        return _cloud_config_reason(text)
    if kind == MIME:
        return _mime_reason(text)
    if kind == JINJA:
        rest = text.lstrip().partition("\n")[2]
        if user_data_type(rest) in ("", JINJA, MIME):
            return "after ## template: jinja, the second line must say what the template renders (e.g. #cloud-config or #!)"
    return ""


def _network_v1_v2_reason(cfg: dict) -> str:
    version = cfg.get("version")
    if version is None:
        return "network-config has no version: (1 or 2)"
    if isinstance(version, bool) or version not in (1, 2):
        return f"network-config version must be 1 or 2, not {version!r}"
    if version == 1 and not isinstance(cfg.get("config"), list):
        return "a version 1 network-config needs a config: list"
    for key in ("ethernets", "bonds", "bridges", "vlans", "wifis"):
        if version == 2 and key in cfg and not isinstance(cfg[key], dict):
            return f"{key}: in a version 2 network-config must be a mapping of interface names"
    return ""


def check_network_config(text: str) -> str:
    """Why ``text`` is not a network-config cloud-init takes, or "" when it is (or empty): a YAML
    mapping with version 1 (and a config: list) or 2, optionally under a top-level network: key."""
    if not text.strip():
        return ""
    reason = _size_reason("the network-config", text) or _load_yaml("the network-config", text)[1]
    if reason:
        return reason
    cfg = yaml.safe_load(text)
    if isinstance(cfg, dict) and "network" in cfg:
        cfg = cfg["network"]
    if not isinstance(cfg, dict):
        return f"network-config must be a YAML mapping with a version: key, not {_kind_of(cfg)}"
    return _network_v1_v2_reason(cfg)


# --- user-data --------------------------------------------------------------------------------------
def _keys(keys: Iterable[str]) -> list[str]:
    return [line.strip() for key in keys for line in key.splitlines() if line.strip()]


def _extend(existing: Any, more: list[str]) -> list:
    found = [existing] if isinstance(existing, str) else list(existing or [])
    return found + [k for k in more if k not in found]


def _users_list(existing: Any) -> list:
    if existing is None:
        # cloud-init's own default is [default]: keeping it makes the form's user an addition, and the
        # image's default user (without key or password, so locked) stays for tools that expect it
        return ["default"]
    if isinstance(existing, str):
        return [name.strip() for name in existing.split(",") if name.strip()]
    if isinstance(existing, dict):  # the old form: {name: {settings}} or {name: true}
        return [
            {"name": name, **conf} if isinstance(conf, dict) else name
            for name, conf in existing.items()
            if isinstance(conf, dict) or conf  # {name: false} leaves the user out
        ]
    return list(existing)


def _with_user(existing: Any, ci: CloudInit) -> list:
    entry: dict[str, Any] = {"name": ci.user, "sudo": SUDO}
    keys = _keys(ci.ssh_keys)
    if keys:
        entry["ssh_authorized_keys"] = keys
    if ci.password_hash:
        entry["passwd"] = ci.password_hash
        entry["lock_passwd"] = False
    users = _users_list(existing)
    for i, old in enumerate(users):
        if old == ci.user:
            users[i] = entry
            return users
        if isinstance(old, dict) and old.get("name") == ci.user:
            merged = {**entry, **old}
            if keys:
                merged["ssh_authorized_keys"] = _extend(old.get("ssh_authorized_keys"), keys)
            users[i] = merged
            return users
    return [*users, entry]  # appended: a "default" the list has stays first


def merge_into(cfg: dict, ci: CloudInit) -> dict:
    """``cfg`` (a parsed #cloud-config) with the form's host name, user, keys and password added.

    The user's YAML wins on every key it sets; lists (users, ssh_authorized_keys) are extended.
    A named user gets an entry in users: (sudo without password, its keys, passwd= the hash and
    lock_passwd: false with a password); without one, the keys and password go to the image's
    default user (top-level ssh_authorized_keys and password, chpasswd expire: false). A password
    turns on ssh_pwauth."""
    out: dict[str, Any] = {}
    if ci.hostname and "hostname" not in cfg and "fqdn" not in cfg:
        out["hostname"] = ci.hostname.split(".")[0]
        if "." in ci.hostname.rstrip("."):
            out["fqdn"] = ci.hostname.rstrip(".")
    out.update(cfg)
    keys = _keys(ci.ssh_keys)
    if ci.user:
        out["users"] = _with_user(cfg.get("users"), ci)
    else:
        if keys:
            out["ssh_authorized_keys"] = _extend(cfg.get("ssh_authorized_keys"), keys)
        if ci.password_hash:
            out.setdefault("password", ci.password_hash)
            # an operator-chosen password is not one to change at the first login
            out["chpasswd"] = {"expire": False, **(cfg.get("chpasswd") or {})}
    if ci.password_hash:
        out.setdefault("ssh_pwauth", True)
    return out


def _adds_anything(ci: CloudInit) -> bool:
    return bool(ci.hostname or ci.user or _keys(ci.ssh_keys) or ci.password_hash)


def _dump(cfg: dict) -> str:
    # block style, keys in the order given, long lines (SSH keys, hashes) unfolded
    body = yaml.safe_dump(cfg, default_flow_style=False, sort_keys=False, allow_unicode=True, width=2**16)
    return "#cloud-config\n" + body


def _text_part(text: str, kind: str) -> MIMEText:
    subtype = kind.partition("/")[2]
    # us-ascii goes as 7bit, readable; anything else as base64, which cloud-init decodes with the
    # charset (an 8bit UTF-8 part would come back mangled through email's get_payload(decode=True))
    charset = "us-ascii" if text.isascii() else "utf-8"
    return MIMEText(text, subtype, charset)


def _multipart(user_text: str, kind: str, ours: str) -> str:
    part = _text_part(ours, CLOUD_CONFIG)
    if kind == MIME:
        msg: Message = email.message_from_string(user_text.lstrip())
        if not msg.is_multipart():
            outer = MIMEMultipart(boundary=_boundary(user_text, ours))
            outer.attach(msg)
            msg = outer
        msg.attach(part)  # last: it merges into what the user's parts set (merge_how)
        return msg.as_string()
    outer = MIMEMultipart(boundary=_boundary(user_text, ours))
    outer.attach(_text_part(user_text, kind))
    outer.attach(part)
    return outer.as_string()


def _boundary(*texts: str) -> str:
    # from the content, not random (the seed is reproducible), and so never found inside it
    digest = hashlib.sha256("\0".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
    return f"==virtfleet-{digest[:32]}=="


def build_user_data(ci: CloudInit) -> str:
    """The user-data file of the seed.

    An empty or #cloud-config user-data gets the form's settings merged in (merge_into) and is
    written as block-style YAML under "#cloud-config"; with nothing to add it is kept as typed
    (comments included). A script or any other format is kept as it is and, when there is
    something to add, goes into a MIME multipart beside a #cloud-config part with the additions.
    Raises ValueError for user-data check_user_data refuses or a password_hash that is not a hash.
    """
    reason = check_user_data(ci.user_data)
    if reason:
        raise ValueError(reason)
    if ci.password_hash and check_password_hash(ci.password_hash):
        raise ValueError("password_hash must be a SHA-512 crypt hash (see hash_password), never the password")
    text = ci.user_data if ci.user_data.strip() else ""
    kind = user_data_type(text) if text else CLOUD_CONFIG
    if not _adds_anything(ci):
        return text or "#cloud-config\n"
    if kind == CLOUD_CONFIG:
        cfg = (yaml.safe_load(text) if text else None) or {}
        return _dump(merge_into(cfg, ci))
    ours = merge_into({}, ci)
    ours["merge_how"] = _MERGE_HOW
    return _multipart(text, kind, _dump(ours))


# --- meta-data and the ISO ----------------------------------------------------------------------------
def instance_id(ci: CloudInit) -> str:
    """``ci.instance_id``, or one derived from the seed's content ("iid-<uuid5>"): the same seed has
    the same id, a changed seed a new one (so cloud-init runs its per-instance modules again)."""
    if ci.instance_id:
        return ci.instance_id
    content = json.dumps(asdict(ci), sort_keys=True)
    return f"iid-{uuid.uuid5(_IID_NAMESPACE, content)}"


def meta_data(ci: CloudInit) -> str:
    """The meta-data file: instance-id (which NoCloud requires) and local-hostname when given."""
    data = {"instance-id": instance_id(ci)}
    if ci.hostname:
        data["local-hostname"] = ci.hostname.rstrip(".")
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False)


def seed_files(ci: CloudInit) -> list[tuple[str, str]]:
    """The (name, content) of each file of the seed: meta-data, user-data, network-config when given.
    Raises ValueError for user-data or network-config the checks refuse."""
    reason = check_network_config(ci.network_config)
    if reason:
        raise ValueError(reason)
    files = [("meta-data", meta_data(ci)), ("user-data", build_user_data(ci))]
    if ci.network_config.strip():
        files.append(("network-config", ci.network_config))
    return files


def _iso9660_name(name: str) -> str:
    # ISO 9660 level 1 (8.3, d-characters) as genisoimage would mangle it; guests read the Rock Ridge
    # or Joliet name, which is the real one
    return "/" + re.sub(r"[^A-Z0-9_]", "_", name.upper())[:8] + ".;1"


def _vd_date() -> bytes:
    # a volume descriptor's date: 16 digits (to the hundredth of a second) and the offset from UTC
    return "{:04}{:02}{:02}{:02}{:02}{:02}00".format(*_PINNED_DATE).encode() + b"\0"


def _pin(date: object) -> None:
    year, month, day, hour, minute, second = _PINNED_DATE
    if isinstance(date, DirectoryRecordDate):
        date.years_since_1900, date.month, date.day_of_month = year - 1900, month, day
        date.hour, date.minute, date.second, date.gmtoffset = hour, minute, second, 0
    elif isinstance(date, VolumeDescriptorDate) and date.year:  # year 0: "not specified", kept
        date.year, date.month, date.dayofmonth, date.hour, date.minute, date.second = _PINNED_DATE
        date.hundredthsofsecond = date.gmtoffset = 0
        date.date_str = _vd_date()


def _pin_dates(iso: pycdlib.PyCdlib) -> None:
    """Set every date pycdlib took from the clock to _PINNED_DATE.

    pycdlib has no option for it, so this walks its objects (the volume descriptors, every directory
    record and its Rock Ridge entries) by their attributes rather than by a layout of its internals."""
    seen: set[int] = set()
    todo: list[object] = [iso]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, DirectoryRecordDate | VolumeDescriptorDate):
            _pin(obj)
        elif isinstance(obj, list | tuple):
            todo.extend(obj)
        elif isinstance(obj, dict):
            todo.extend(obj.values())
        elif type(obj).__module__.startswith("pycdlib."):
            names = [n for cls in type(obj).__mro__ for n in getattr(cls, "__slots__", ())]
            names += list(getattr(obj, "__dict__", {}))
            todo.extend(getattr(obj, n, None) for n in names)


def _pin_modification_dates(image: memoryview) -> bytes:
    """The image with each volume descriptor's modification date set to _PINNED_DATE: pycdlib stamps
    it with the clock while writing. ECMA-119 8.4: descriptors from sector 16 until the terminator
    (type 255), "CD001" at byte 1, the modification date at bytes 830-846."""
    date = _vd_date()
    for sector in range(16, len(image) // 2048):
        start = sector * 2048
        kind, ident = image[start], bytes(image[start + 1 : start + 6])
        if ident != b"CD001" or kind == 255:
            break
        if kind in (1, 2):  # primary, supplementary (Joliet)
            image[start + 830 : start + 847] = date
    return bytes(image)


def nocloud_iso(ci: CloudInit) -> bytes:
    """The NoCloud seed ISO: ISO 9660 with Joliet and Rock Ridge, volume identifier "cidata", the
    files /meta-data, /user-data and /network-config (when given), read-only. Built in memory; the
    same ``ci`` gives the same bytes. Raises ValueError for content the checks refuse."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, vol_ident=SEED_LABEL, joliet=3, rock_ridge="1.09")
    for name, text in seed_files(ci):
        data = text.encode("utf-8")
        iso.add_fp(io.BytesIO(data), len(data), _iso9660_name(name), rr_name=name, joliet_path=f"/{name}",
                   file_mode=0o100444)  # fmt: skip
    _pin_dates(iso)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return _pin_modification_dates(out.getbuffer())
