// VM page: keep the operation buttons and the job panel current as events arrive.
import { humanBytes } from "./format.js";
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
  if (event.type === "job.updated" && event.job.vm_uuid === uuid) {
    const job = event.job;
    const active = document.querySelector(`.job-active[data-job-id="${job.id}"]`);
    if (active && (job.status === "running" || job.status === "queued")) {
      active.querySelector('[data-field="progress"]').value = job.progress;
      active.querySelector('[data-field="message"]').textContent = job.message;
    } else {
      refreshSoon();
    }
  }
});
document.addEventListener("vf:refresh", refreshSoon);

// Migration progress (pushed at least twice a second while it runs).
document.addEventListener("vf:event", (ev) => {
  const event = ev.detail;
  if (event.type !== "migration.progress" || event.vm_uuid !== uuid) return;
  const stats = document.querySelector(`#migration-stats[data-job-id="${event.job_id}"]`);
  const panel = document.querySelector(`.job-active[data-job-id="${event.job_id}"]`);
  if (!stats || !panel?.querySelector(".badge.job-running")) refreshSoon(); // the panel is older than the job
  if (!stats) return;
  const p = event.progress;
  const set = (key, text) => {
    const el = stats.querySelector(`[data-stat="${key}"]`);
    if (el) el.textContent = text;
  };
  set("phase", p.phase);
  set("percent", `${p.percent} %`);
  set("processed", p.data_total ? `${humanBytes(p.data_processed)} of ${humanBytes(p.data_total)}` : "—");
  set("remaining", p.data_total ? humanBytes(p.data_remaining) : "—");
  set("speed", p.memory_bps ? `${humanBytes(p.memory_bps)}/s` : "—");
  set("dirty", p.dirty_rate_bps ? `${humanBytes(p.dirty_rate_bps)}/s` : "—");
  set("downtime", p.expected_downtime_ms ? `${p.expected_downtime_ms} ms` : "—");
  set("elapsed", `${(p.elapsed_ms / 1000).toFixed(1)} s`);
  const bar = document.querySelector(`.job-active[data-job-id="${event.job_id}"] [data-field="progress"]`);
  if (bar) bar.value = p.percent;
});
