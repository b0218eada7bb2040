"""Virtual networks, their DHCP leases, and the addresses guests have, as every host's libvirt last
reported them.

Rows are written only from what libvirt reports (networks.inventory), never guessed; a network the
host no longer has loses its row, a lease dnsmasq dropped loses its row. A network belongs to a
host: the host's rights cover it.
"""

from __future__ import annotations

import ipaddress

from django.db import models
from django.utils import timezone

MODE_CHOICES = [
    ("nat", "NAT"), ("route", "Routed"), ("open", "Open"), ("isolated", "Isolated"), ("bridge", "Host bridge"),
    ("macvtap", "macvtap"), ("other", "Other"),
]  # fmt: skip


class Network(models.Model):
    """A libvirt virtual network of one host."""

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="networks")
    name = models.CharField(max_length=255)
    uuid = models.CharField(max_length=36, blank=True)
    active = models.BooleanField(default=False, db_index=True)
    persistent = models.BooleanField(default=True)
    autostart = models.BooleanField(default=False)
    mode = models.CharField(max_length=16, choices=MODE_CHOICES, default="nat", db_index=True)
    forward_mode = models.CharField(max_length=16, blank=True)
    bridge = models.CharField(max_length=64, blank=True)
    forward_dev = models.CharField(max_length=64, blank=True)
    # Its <ip> elements (virt.network.IpRange fields: family, address, prefix, dhcp_start, dhcp_end,
    # hosts = its static DHCP entries).
    ips = models.JSONField(default=list, blank=True)
    xml = models.TextField(blank=True)
    observed_at = models.DateTimeField(default=timezone.now)
    version = models.PositiveBigIntegerField(default=1)

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [models.UniqueConstraint(fields=["host", "name"], name="one_network_name_per_host")]
        indexes = [models.Index(fields=["name", "id"])]

    def __str__(self) -> str:
        return f"{self.name} on {self.host.name}" if self.host_id else self.name

    def audit_target(self) -> dict:
        return {"target_type": "network", "target_id": str(self.pk or ""), "target_name": self.name,
                "host_ref": self.host_id, "host_name": self.host.name if self.host_id else ""}  # fmt: skip

    @property
    def subnets(self) -> list[str]:
        found = []
        for ip in self.ips or ():
            try:
                found.append(str(ipaddress.ip_interface(f"{ip['address']}/{ip['prefix']}").network))
            except (KeyError, ValueError):
                continue
        return found

    @property
    def dhcp_ranges(self) -> list[str]:
        return [f"{ip['dhcp_start']} - {ip['dhcp_end']}" for ip in self.ips or () if ip.get("dhcp_start")]

    @property
    def has_dhcp(self) -> bool:
        return any(ip.get("dhcp_start") for ip in self.ips or ())

    @property
    def dhcp_hosts(self) -> list[dict]:
        return [{**h, "family": ip.get("family", "ipv4")} for ip in self.ips or () for h in ip.get("hosts", ())]

    @property
    def addressed(self) -> bool:
        """Whether libvirt gives it an address and can run DHCP on it (not a host bridge, not macvtap)."""
        return self.mode in ("nat", "route", "open", "isolated")


class Lease(models.Model):
    """A DHCP lease dnsmasq handed out on a network, as its host last listed it."""

    network = models.ForeignKey(Network, on_delete=models.CASCADE, related_name="leases")
    mac = models.CharField(max_length=32, db_index=True)
    ip = models.GenericIPAddressField()
    prefix = models.PositiveSmallIntegerField(default=0)
    family = models.CharField(max_length=4, default="ipv4")
    hostname = models.CharField(max_length=255, blank=True)
    client_id = models.CharField(max_length=255, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)  # None: an infinite lease
    observed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["network", "ip"]
        constraints = [models.UniqueConstraint(fields=["network", "mac", "ip"], name="one_lease_per_address")]

    def __str__(self) -> str:
        return f"{self.ip} → {self.mac}"


class GuestAddress(models.Model):
    """An address a running guest has on a NIC that no lease of its host's networks explains (a NIC
    on a host bridge, a static address), from the host's ARP table or the guest agent."""

    vm = models.ForeignKey("vms.VM", on_delete=models.CASCADE, related_name="addresses")
    mac = models.CharField(max_length=32)
    ip = models.GenericIPAddressField()
    prefix = models.PositiveSmallIntegerField(default=0)
    family = models.CharField(max_length=4, default="ipv4")
    source = models.CharField(max_length=8)  # arp, agent
    observed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["vm", "mac", "ip"]
        constraints = [models.UniqueConstraint(fields=["vm", "mac", "ip", "source"], name="one_guest_address")]

    def __str__(self) -> str:
        return f"{self.ip} ({self.source})"
