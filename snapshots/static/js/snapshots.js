// The Snapshots section of a VM's page: the take form sends disk_only from the chosen kind, and the
// section is fetched again when the VM's snapshots change (vm.snapshots) or a snapshot job moves on.
import { refetchSoon } from "./fragments.js";

const uuid = document.getElementById("vm-snapshots")?.dataset.uuid;

document.addEventListener("change", (ev) => {
  if (!ev.target.matches("[data-snap-kind]")) return;
  const form = ev.target.closest("form");
  form.querySelector("[data-snap-disk-only]").value = ev.target.value === "disk_only" ? "1" : "";
});

// The first kind that is not refused is the chosen one (the form may open with internal refused).
document.addEventListener("toggle", (ev) => {
  if (!ev.target.matches?.("#snap-take") || !ev.target.open) return;
  const kinds = [...ev.target.querySelectorAll("[data-snap-kind]")];
  if (kinds.some((k) => k.checked && !k.disabled)) return;
  const first = kinds.find((k) => !k.disabled);
  if (first) {
    first.checked = true;
    first.dispatchEvent(new Event("change", { bubbles: true }));
  }
}, true);

document.addEventListener("vf:event", (ev) => {
  const e = ev.detail;
  if (!uuid) return;
  if (e.type === "vm.snapshots" && e.vm === uuid) refetchSoon("snapshots");
  if (e.type === "job.updated" && e.job.vm_uuid === uuid && e.job.kind.startsWith("snapshot.")) refetchSoon("snapshots");
  // a state change re-renders the buttons, but not under a user filling in the take form
  if (e.type === "vm.updated" && e.vm.uuid === uuid && !document.querySelector("#snap-take[open]")) refetchSoon("snapshots");
});
document.addEventListener("vf:refresh", () => {
  if (uuid) refetchSoon("snapshots");
});
