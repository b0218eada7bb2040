// Network pages: the new network form shows what its mode needs; network tables, leases and a VM's
// NICs follow events (network.*, network.leases, vm.addresses) without a reload.

import { refetchSoon } from "./fragments.js";

// --- the new network form: only the fields of the chosen mode --------------------------------------
const ADDRESSED = ["ipv4", "dhcp", "dhcp_start", "dhcp_end", "ipv6", "dhcp6", "bridge", "domain", "mtu"];
const FIELDS = {
  nat: [...ADDRESSED, "forward_dev"],
  route: [...ADDRESSED, "forward_dev"],
  open: ADDRESSED,
  isolated: ADDRESSED,
  bridge: ["bridge"],
  macvtap: ["forward_dev", "macvtap_mode"],
  xml: ["xml"],
};
const MODE_DEPENDENT = new Set(Object.values(FIELDS).flat());
const netForm = document.getElementById("network-form");
if (netForm) {
  const mode = netForm.querySelector("[name=mode]");
  const dhcp = netForm.querySelector("[name=dhcp]");
  const show = () => {
    const wanted = FIELDS[mode.value] || [];
    netForm.querySelectorAll("[data-net-field]").forEach((row) => {
      const name = row.dataset.netField;
      if (!MODE_DEPENDENT.has(name)) return;
      let visible = wanted.includes(name);
      if ((name === "dhcp_start" || name === "dhcp_end") && dhcp && !dhcp.checked) visible = false;
      row.hidden = !visible;
    });
  };
  mode.addEventListener("change", show);
  dhcp?.addEventListener("change", show);
  show();
}

// --- live: refetch what the page shows when its networks, leases or NICs change --------------------

const head = document.getElementById("network-head");
const networkId = head?.dataset.networkId;
const vmHead = document.getElementById("vm-head");
const vmUuid = document.querySelector('[data-fragment="nics"]') && vmHead?.dataset.uuid;
const vmMacs = () => new Set([...document.querySelectorAll("#vm-nics [data-mac]")].map((r) => r.dataset.mac));

document.addEventListener("vf:event", (ev) => {
  const e = ev.detail;
  if (networkId) {
    if (e.type === "network.removed" && String(e.network_id) === networkId) {
      const notice = document.getElementById("network-notice");
      notice.textContent = "This network is no longer on its host.";
      notice.classList.add("show");
      return;
    }
    if (e.type === "network.updated" && String(e.network.id) === networkId) refetchSoon("network", "leases");
    if (e.type === "network.leases" && String(e.network_id) === networkId) refetchSoon("leases");
    if (e.type === "vm.updated" && String(e.vm.host) === head.dataset.hostId) refetchSoon("leases");
    if (e.type === "job.updated" && e.job.kind.startsWith("network.") && e.job.status !== "running") refetchSoon("network");
  }
  if ((e.type === "network.updated" || e.type === "network.removed") &&
      document.querySelector('[data-fragment="networks"]')) refetchSoon("networks");
  if (vmUuid) {
    const ours = (e.type === "vm.updated" && e.vm.uuid === vmUuid) ||
      (e.type === "vm.addresses" && e.vm === vmUuid) ||
      (e.type === "network.leases" && e.macs.some((m) => vmMacs().has(m))) ||
      e.type === "network.updated";
    if (ours) refetchSoon("nics");
  }
});
document.addEventListener("vf:refresh", () => {
  if (document.querySelector('[data-fragment="networks"]')) refetchSoon("networks");
  if (networkId) refetchSoon("network", "leases");
  if (vmUuid) refetchSoon("nics");
});
