"""The forms of the network pages; the job kinds check the values again (networks.params)."""

from django import forms

from virt.network import MACVTAP_MODES, MODE_LABELS, MODES


class NetworkDefineForm(forms.Form):
    name = forms.CharField(max_length=50, help_text="e.g. default, lab, backend")
    mode = forms.ChoiceField(choices=[(m, MODE_LABELS[m]) for m in MODES] + [("xml", "From XML")])
    ipv4 = forms.CharField(required=False, max_length=64, label="IPv4 address / prefix",
                           help_text="the network's own address (the guests' gateway), e.g. 192.168.100.1/24")  # fmt: skip
    dhcp = forms.BooleanField(required=False, initial=True, label="Hand out IPv4 addresses by DHCP")
    dhcp_start = forms.CharField(required=False, max_length=64, label="DHCP range from",
                                 help_text="empty: every address after the network's own")  # fmt: skip
    dhcp_end = forms.CharField(required=False, max_length=64, label="DHCP range to")
    ipv6 = forms.CharField(required=False, max_length=64, label="IPv6 address / prefix",
                           help_text="optional, e.g. fd00:100::1/64")  # fmt: skip
    dhcp6 = forms.BooleanField(required=False, label="DHCPv6")
    bridge = forms.CharField(required=False, max_length=15, label="Bridge",
                             help_text="NAT, routed, open, isolated: its bridge's name (empty: libvirt picks virbrN). "
                                       "Host bridge: the existing bridge, e.g. br0")  # fmt: skip
    forward_dev = forms.CharField(required=False, max_length=15, label="Host device",
                                  help_text="macvtap: the device the guests share, e.g. eth0. NAT, routed: "
                                            "send traffic out by this device only (optional)")  # fmt: skip
    macvtap_mode = forms.ChoiceField(required=False, choices=[(m, m) for m in MACVTAP_MODES], label="macvtap mode",
                                     help_text="bridge: guests see each other; vepa and private: through the switch")  # fmt: skip
    domain = forms.CharField(required=False, max_length=253, label="DNS domain", help_text="optional, e.g. lab.example")
    mtu = forms.IntegerField(required=False, min_value=68, max_value=65535, label="MTU")
    xml = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
                          label="Network XML", help_text="a whole <network> definition; its name must be the one above")  # fmt: skip
    start = forms.BooleanField(required=False, initial=True, label="Start it")
    autostart = forms.BooleanField(required=False, initial=True, label="Start it with the host")

    def params(self) -> dict:
        data = {k: v for k, v in self.cleaned_data.items() if k != "name"}
        data["macvtap_mode"] = data.get("macvtap_mode") or "bridge"
        if data.get("mtu") is None:
            data.pop("mtu", None)
        return data


class DhcpHostForm(forms.Form):
    command = forms.ChoiceField(required=False, choices=[("add", "add"), ("modify", "modify"), ("delete", "delete")])
    mac = forms.CharField(max_length=32, label="MAC")
    ip = forms.CharField(required=False, max_length=64, label="Address")
    name = forms.CharField(required=False, max_length=253, label="Host name")

    def clean_command(self):
        return self.cleaned_data.get("command") or "add"


class NicNetworkForm(forms.Form):
    mac = forms.CharField(max_length=32)
    network = forms.CharField(max_length=64)
