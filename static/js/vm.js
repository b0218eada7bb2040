// VM page: keep the operation buttons and the job panel current as events arrive.
import { newer } from "./live.js";
const head = document.getElementById("vm-head");
const uuid = head?.dataset.uuid;

async function refresh(fragment) {
  const holder = document.querySelector(`[data-fragment="${fragment}"]`);
  if (!holder) return;
  const url = new URL(location.href);
  url.searchParams.set("fragment", fragment);
  const response = await fetch(url, { credentials: "same-origin" });
  if (response.ok) holder.innerHTML = await response.text();
}

let pending = null;
function refreshSoon() {
  // Events come in bursts (job + VM state); one refetch covers them all.
  clearTimeout(pending);
  pending = setTimeout(() => {
    refresh("actions");
    refresh("jobs");
  }, 150);
}

document.addEventListener("vf:event", (ev) => {
  const event = ev.detail;
  if (event.type === "vm.updated" && event.vm.uuid === uuid) refreshSoon();
  if ((event.type === "job.updated" || event.type === "migration.progress") && event.job.vm_uuid === uuid) {
    const job = event.job;
    const active = document.querySelector(`.job-active[data-job-id="${job.id}"]`);
    if (active && !newer(active, job.version)) return;
    if (active && active.dataset.status === job.status && (job.status === "running" || job.status === "queued")) {
      active.querySelector('[data-field="progress"]').value = job.progress;
      active.querySelector('[data-field="message"]').textContent = job.message;
    } else {
      refreshSoon();
    }
  }
});
document.addEventListener("vf:refresh", refreshSoon);
