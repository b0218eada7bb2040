"""Network pages: every network of the fleet, one network with its leases, static DHCP entries and
VMs, a new network; the forms of the operations post here and become jobs (networks.services).
Pages read the database only."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core import access
from core.errors import Forbidden, ServiceError
from core.filters import values
from core.net import client_ip
from core.pagination import paginate, query_without
from core.shortcuts import get_or_404, job_requested, redirect_back, run_job_request
from hosts.selectors import host_choices, host_get
from jobs.selectors import active_job, recent_jobs
from vms.selectors import vm_get

from . import services
from .forms import DhcpHostForm, NetworkDefineForm, NicNetworkForm
from .models import MODE_CHOICES, Network
from .selectors import NetworkFilterSet, attached_counts, leases_of, network_get, network_list, vm_nics, vms_on


def _network_or_404(request, network_id, action: str = access.VIEW, what: str = ""):
    return get_or_404(request, lambda: network_get(network_id=network_id), action, what=what)


def _errors(form) -> str:
    return "; ".join(f"{k}: {v[0]}" if k != "__all__" else v[0] for k, v in form.errors.items())


@login_required
@require_GET
def network_list_view(request):
    filterset = NetworkFilterSet(request.GET, queryset=access.visible_on_hosts(request.user, network_list()))
    page = paginate(filterset.qs.order_by("host__name", "name", "id"), request)
    networks = list(page.object_list)
    counts = attached_counts(networks)
    for n in networks:
        n.vm_count = counts.get(n.pk, 0)
    context = {
        "page": page,
        "networks": networks,
        "filters": values(filterset, host_id="host"),
        "host_choices": host_choices(user=request.user),
        "modes": MODE_CHOICES,
        "base_query": query_without(request, "page", "fragment"),
    }
    if request.GET.get("fragment") == "networks":
        return render(request, "networks/_network_table.html", context)
    return render(request, "networks/list.html", context)


@login_required
@require_GET
def network_detail(request, network_id):
    network = _network_or_404(request, network_id)
    vms = vms_on(network)
    context = {
        "network": network,
        "network_job": active_job(lock_key=f"network:{network.host_id}:{network.name}"),
        "leases": leases_of(network),
        "vms": sorted(vms, key=lambda vm: vm.name),
        "vm_macs": {nic.get("mac"): vm for vm in vms for nic in vm.interfaces or ()},
        "recent_jobs": recent_jobs(host_id=network.host_id, limit=8, kind_prefix=("network.",)),
    }
    for lease in context["leases"]:
        lease.vm = context["vm_macs"].get(lease.mac)
    fragment = request.GET.get("fragment")
    if fragment == "network":
        return render(request, "networks/_network_head.html", context)
    if fragment == "leases":
        return render(request, "networks/_network_body.html", context)
    return render(request, "networks/network.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def network_new(request, host_id):
    host = get_or_404(request, lambda: host_get(host_id=host_id), access.MANAGE, what="network.define")
    form = NetworkDefineForm(request.POST or None, initial={"mode": "nat", "dhcp": True, "start": True,
                                                             "autostart": True})  # fmt: skip
    if request.method == "POST" and form.is_valid():
        try:
            job = services.network_define_request(host=host, name=form.cleaned_data["name"], params=form.params(),
                                                  user=request.user, ip=client_ip(request))  # fmt: skip
        except Forbidden:
            raise
        except ServiceError as exc:
            field = (exc.field or "").removeprefix("params.")
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            job_requested(request, job, f"Network {form.cleaned_data['name']} on {host.name}")
            return redirect(f"/hosts/{host.pk}/")
    used = [(n.name, ", ".join(n.subnets) or "no subnet", n.bridge)
            for n in Network.objects.filter(host=host).order_by("name")]  # fmt: skip
    return render(request, "networks/network_new.html", {"form": form, "host": host, "used": used})


@login_required
@require_POST
def network_action(request, network_id, action):
    network = _network_or_404(request, network_id, access.MANAGE, f"network.{action}"[:64])
    back = f"/networks/{network.pk}/"
    params = {"force": request.POST.get("force")} if request.POST.get("force") else None
    return run_job_request(request, back if action != "delete" else "/networks/",
                lambda: services.network_job_request(network=network, action=action, params=params, user=request.user,
                                                     ip=client_ip(request)),
                f"{action.replace('_', ' ').capitalize()} of network {network.name}")  # fmt: skip


@login_required
@require_POST
def dhcp_host(request, network_id):
    network = _network_or_404(request, network_id, access.MANAGE, "network.dhcp_host")
    back = f"/networks/{network.pk}/"
    form = DhcpHostForm(request.POST)
    if not form.is_valid():
        messages.error(request, _errors(form))
        return redirect_back(request, back)
    data = form.cleaned_data
    what = {"add": "New DHCP entry", "modify": "Change of the DHCP entry", "delete": "Removal of the DHCP entry"}
    return run_job_request(request, back, lambda: services.dhcp_host_request(network=network, params=data, user=request.user,
                                                                  ip=client_ip(request)),
                f"{what[data['command']]} for {data['mac']}")  # fmt: skip


@login_required
@require_POST
def nic_network(request, uuid):
    vm = get_or_404(request, lambda: vm_get(uuid=uuid), access.OPERATE, what="vm.nic_network")
    back = f"/vms/{vm.uuid}/"
    form = NicNetworkForm(request.POST)
    if not form.is_valid():
        messages.error(request, _errors(form))
        return redirect_back(request, back)
    return run_job_request(request, back, lambda: services.nic_network_request(
        vm=vm, mac=form.cleaned_data["mac"], network=form.cleaned_data["network"], user=request.user,
        ip=client_ip(request)), f"Move of NIC {form.cleaned_data['mac']} to {form.cleaned_data['network']}")  # fmt: skip


def host_networks(request, host) -> dict:
    """The host page's networks section: its networks, and whether the user may add one."""
    networks = list(network_list().filter(host=host).order_by("name"))
    counts = attached_counts(networks)
    for n in networks:
        n.vm_count = counts.get(n.pk, 0)
    return {"host_networks": networks, "can_add_network": access.may(request.user, access.MANAGE, host)}


def vm_nics_section(request, vm) -> dict:
    networks = list(Network.objects.filter(host_id=vm.host_id).order_by("name").values_list("name", flat=True)) \
        if vm.host_id else []  # fmt: skip
    return {"vm_nics": vm_nics(vm), "host_network_names": networks,
            "can_move_nic": access.may(request.user, access.OPERATE, vm)}  # fmt: skip
