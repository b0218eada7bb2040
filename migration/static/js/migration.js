// A running migration's statistics on the VM page (pushed at least twice a second while it runs).
import { humanBytes } from "./format.js";

document.addEventListener("vf:event", (ev) => {
  const event = ev.detail;
  if (event.type !== "migration.progress") return;
  const stats = document.querySelector(`#migration-stats[data-job-id="${event.job.id}"]`);
  if (!stats) return; // not shown here (vm.js refetches a job panel that is older than the job)
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
});
