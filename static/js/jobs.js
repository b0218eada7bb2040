// Jobs list and job page: statuses, progress and outcomes update live.
import { badge, escapeHtml } from "./format.js";
import { newer } from "./live.js";

const jobBadge = (status, label) => badge(status === "running" ? "job-running" : status, label);

const table = document.getElementById("job-table");
const headEl = document.getElementById("job-head");

function applyRow(job) {
  const row = document.querySelector(`tr[data-job-id="${job.id}"]`);
  if (!row) return false;
  if (!newer(row, job.version)) return true;
  row.querySelector('[data-field="status"]').innerHTML = jobBadge(job.status, job.status_label);
  const bar = job.status === "running" ? `<progress class="progress progress-inline" max="100" value="${job.progress}">${job.progress} %</progress>` : "";
  const text = job.error ? `<span class="error-text">${escapeHtml(job.error)}</span>` : escapeHtml(job.message);
  row.querySelector('[data-field="outcome"]').innerHTML = bar + text;
  if (job.started_at && job.finished_at) {
    const took = (Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000;
    row.querySelector('[data-field="duration"]').textContent = `${took.toFixed(1)} s`;
  }
  return true;
}

function applyHead(job) {
  if (!headEl || String(job.id) !== headEl.dataset.jobId || !newer(headEl, job.version)) return;
  const previous = headEl.dataset.status;
  headEl.querySelector('[data-field="status"]').innerHTML = jobBadge(job.status, job.status_label);
  document.querySelector('[data-field="progress"]').value = job.progress;
  document.querySelector('[data-field="message"]').textContent = job.message;
  if (previous && previous !== job.status) {
    const li = document.createElement("li");
    li.innerHTML = `<time>${new Date().toLocaleTimeString()}</time> ${jobBadge(job.status, job.status_label)} ${escapeHtml(job.error || job.message)}`;
    document.getElementById("job-timeline")?.appendChild(li);
  }
  headEl.dataset.status = job.status;
  if (job.error && !document.querySelector('[data-field="error"]')) location.reload();
}

document.addEventListener("vf:event", (ev) => {
  // a migration's progress carries its job too
  if (ev.detail.type !== "job.updated" && ev.detail.type !== "migration.progress") return;
  const job = ev.detail.job;
  applyHead(job);
  if (table && !applyRow(job)) {
    const notice = document.getElementById("job-notice");
    notice.innerHTML = 'New jobs were started. <a href="">Show them</a>';
    notice.classList.add("show");
  }
});

document.addEventListener("vf:refresh", async () => {
  if (!table) return;
  const url = new URL(location.href);
  url.searchParams.set("fragment", "jobs");
  const response = await fetch(url, { credentials: "same-origin" });
  if (response.ok) table.innerHTML = await response.text();
});
