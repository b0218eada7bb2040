from django import forms

from virt.uri import EXAMPLES


class HostForm(forms.Form):
    """Add / edit a host. The host services do the real validation (URI, duplicate, connect)."""

    name = forms.CharField(max_length=100, help_text="A short name for the host, e.g. kvm-07.")
    uri = forms.CharField(
        label="libvirt URI",
        max_length=1024,
        help_text=f"For example {EXAMPLES}.",
        widget=forms.TextInput(
            attrs={"placeholder": "qemu+ssh://root@kvm-07.example.com/system", "spellcheck": "false"}
        ),
    )
    ssh_key_path = forms.CharField(
        label="SSH private key file",
        max_length=1024,
        required=False,
        help_text="qemu+ssh only: absolute path of a key file on the Virtfleet server.",
        widget=forms.TextInput(attrs={"placeholder": "/etc/virtfleet/keys/id_ed25519", "spellcheck": "false"}),
    )
    sasl_username = forms.CharField(label="SASL user", max_length=150, required=False)
    sasl_password = forms.CharField(
        label="SASL password",
        max_length=1024,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    peer_uri = forms.CharField(
        label="URI for other hosts (migration)",
        max_length=1024,
        required=False,
        help_text="How other hosts' libvirtd reach this one for peer-to-peer migration; default: the URI above.",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
    )
    migration_address = forms.CharField(
        label="Migration network address",
        max_length=255,
        required=False,
        help_text="Address of this host on the network migrations should use; default: its host name.",
    )


class HostAddForm(HostForm):
    allow_offline = forms.BooleanField(
        label="Add it even if it cannot be reached now",
        required=False,
        help_text="The host is registered as unreachable and connected as soon as it answers.",
    )


class HostEditForm(HostForm):
    clear_sasl_password = forms.BooleanField(label="Remove the stored SASL password", required=False)

    def __init__(self, *args, has_password: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if has_password:
            self.fields["sasl_password"].help_text = "A password is stored. Leave empty to keep it."
