// Storage pages: the pool form shows what its type needs; pool and volume tables follow events;
// uploads send the file in chunks to /api/transfers/<job>/ and resume after a dropped connection.
import { humanBytes } from "./format.js";
import { refetchSoon } from "./fragments.js";

const csrf = () => document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] || "";

// --- the new pool form: only the fields of the chosen type ------------------------------------------
const FIELDS = {
  dir: ["target_path"],
  fs: ["source_device", "source_format", "target_path"],
  netfs: ["source_host", "source_dir", "source_format", "target_path"],
  logical: ["source_name", "source_device"],
};
const poolForm = document.getElementById("pool-form");
if (poolForm) {
  const type = poolForm.querySelector("[name=type]");
  const show = () => {
    const wanted = FIELDS[type.value] || [];
    poolForm.querySelectorAll("[data-pool-field^=source_], [data-pool-field=target_path]").forEach((row) => {
      row.hidden = !wanted.includes(row.dataset.poolField);
    });
  };
  type.addEventListener("change", show);
  show();
}

// --- live: refetch what the page shows when its pools or volumes change ------------------------------
const poolId = document.getElementById("pool-head")?.dataset.poolId;
const vmUuid = document.querySelector('[data-fragment="disks"]') && document.getElementById("vm-head")?.dataset.uuid;
document.addEventListener("vf:event", (ev) => {
  const e = ev.detail;
  if (poolId) {
    const ours = (e.type === "pool.updated" && String(e.pool.id) === poolId) ||
      (e.type === "pool.removed" && String(e.pool_id) === poolId) ||
      (e.type.startsWith("volume.") && String(e.volume?.pool ?? e.pool) === poolId) ||
      (e.type === "job.updated" && e.job.kind.startsWith("volume.") && e.job.status !== "running");
    if (e.type === "pool.removed" && String(e.pool_id) === poolId) {
      document.getElementById("volume-notice").textContent = "This pool is no longer on its host.";
      document.getElementById("volume-notice").classList.add("show");
      return;
    }
    if (ours) refetchSoon("pool", "volumes");
  }
  if (e.type.startsWith("pool.") && document.querySelector('[data-fragment="pools"]')) refetchSoon("pools");
  // a VM's page: its disks follow the VM's definition and the volumes they are
  if (vmUuid && ((e.type === "vm.updated" && e.vm.uuid === vmUuid) || e.type.startsWith("volume."))) refetchSoon("disks");
});
// the live socket came back after a gap: whatever this page shows may have changed meanwhile
document.addEventListener("vf:refresh", () => {
  if (document.querySelector('[data-fragment="pools"]')) refetchSoon("pools");
  if (poolId) refetchSoon("pool", "volumes");
  if (vmUuid) refetchSoon("disks");
});

// --- uploads ------------------------------------------------------------------------------------------
const form = document.getElementById("upload-form");
const status = document.getElementById("upload-status");
const bar = document.getElementById("upload-progress");
const text = document.getElementById("upload-text");
let current = null; // {job, url, token, file, offset, started, cancelled}

function say(message, percent) {
  status.hidden = false;
  text.textContent = message;
  if (percent !== undefined) {
    bar.value = percent;
    bar.textContent = `${percent} %`;
  }
}

function rate(sent, total, started, from = 0) {
  const seconds = Math.max(0.001, (Date.now() - started) / 1000);
  const speed = (sent - from) / seconds; // of this session: a resumed upload counts from where it went on
  const left = speed ? Math.round((total - sent) / speed) : 0;
  return `${humanBytes(sent)} of ${humanBytes(total)} at ${humanBytes(speed)}/s${left > 0 ? `, about ${left} s left` : ""}`;
}

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

async function offsetNow(up) {
  const response = await fetch(up.url, { method: "HEAD", credentials: "same-origin" });
  if (!response.ok) throw new Error(`the upload cannot resume (the server answered ${response.status})`);
  return Number(response.headers.get("Upload-Offset") || 0);
}

// A chunk of nothing but zeros (the holes of a sparse image) is not sent: the server is told its
// length and the host writes a hole — one request for a run of such chunks (up to MAX_HOLE bytes).
const MAX_HOLE = 1024 * 1024 * 1024;
function allZero(buffer) {
  const words = new Uint32Array(buffer, 0, buffer.byteLength >> 2);
  for (let i = 0; i < words.length; i += 1) if (words[i] !== 0) return false;
  const tail = new Uint8Array(buffer, words.length << 2);
  for (let i = 0; i < tail.length; i += 1) if (tail[i] !== 0) return false;
  return true;
}

async function sendChunks(up) {
  let failures = 0;
  while (up.offset < up.file.size && !up.cancelled) {
    let end = Math.min(up.file.size, up.offset + up.chunk);
    let response;
    try {
      const data = await up.file.slice(up.offset, end).arrayBuffer();
      const hole = allZero(data);
      while (hole && end < up.file.size && end - up.offset < MAX_HOLE) {
        const next = Math.min(up.file.size, end + up.chunk);
        if (!allZero(await up.file.slice(end, next).arrayBuffer())) break;
        end = next;
      }
      const headers = { "Upload-Offset": String(up.offset), "X-Upload-Token": up.token };
      if (hole) headers["Upload-Hole"] = String(end - up.offset);
      else headers["Content-Type"] = "application/offset+octet-stream";
      response = await fetch(up.url, {
        method: "PATCH", credentials: "same-origin", headers, body: hole ? null : data,
      });
    } catch {
      response = null; // the connection dropped: ask where to resume
    }
    if (response && response.status === 204) {
      up.offset = Number(response.headers.get("Upload-Offset"));
      failures = 0;
      say(`Sending: ${rate(up.offset, up.file.size, up.started, up.startOffset)}`, Math.floor((100 * up.offset) / up.file.size));
      continue;
    }
    if (response && ![409, 503].includes(response.status)) {
      const data = await response.json().catch(() => ({}));
      throw new Error(data.error || `the server answered ${response.status}`);
    }
    failures += 1;
    if (failures > 30) throw new Error("the connection kept dropping; reload the page and choose the same file to resume");
    const wait = Math.min(10000, 500 * 2 ** Math.min(failures, 5));
    say(`Connection lost — resuming in ${Math.ceil(wait / 1000)} s…`);
    await new Promise((r) => setTimeout(r, wait));
    up.offset = await offsetNow(up).catch(() => up.offset);
  }
}

// An unfinished upload is remembered in this browser (job, pool, the file's name, size and date — no
// token: a resume asks the server for a new one), so a closed or reloaded page can go on with it.
const KEY = "vf-uploads";
function unfinished() {
  try { return JSON.parse(localStorage.getItem(KEY) || "{}"); } catch { return {}; }
}
function remember(up) {
  const all = unfinished();
  all[up.job] = { job: up.job, pool: up.pool, name: up.file.name, size: up.file.size, modified: up.file.lastModified, volume: up.volume };
  localStorage.setItem(KEY, JSON.stringify(all));
}
function forget(job) {
  const all = unfinished();
  delete all[job];
  localStorage.setItem(KEY, JSON.stringify(all));
}
function leftHere(pool) {
  return Object.values(unfinished()).filter((u) => u.pool === pool);
}

if (form) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = document.getElementById("u-file").files[0];
    if (!file) return;
    const name = document.getElementById("u-name").value.trim() || file.name.replace(/[^A-Za-z0-9._+-]/g, "_");
    const pool = Number(form.dataset.pool);
    form.querySelector("button[type=submit]").disabled = true;
    try {
      const left = leftHere(pool).find((u) => u.name === file.name && u.size === file.size && u.modified === file.lastModified);
      let started = null;
      if (left) {
        say(`Resuming the upload of ${file.name}…`);
        started = await api(`/api/uploads/${left.job}/resume/`, {}).catch(() => null);
        if (!started) forget(left.job); // it ended meanwhile: start afresh
      }
      if (!started) {
        say(`Starting the upload of ${file.name} (${humanBytes(file.size)})…`, 0);
        started = await api("/api/uploads/", {
          pool, name,
          params: {
            size: file.size, format: document.getElementById("u-format").value,
            sha256: document.getElementById("u-sha").value.trim(), overwrite: document.getElementById("u-overwrite").checked,
          },
        });
      }
      current = { job: started.job.id, url: started.url, token: started.token, file, offset: started.offset, pool,
        volume: started.job.subject_name || name, chunk: started.chunk_size, started: Date.now(), startOffset: started.offset,
        cancelled: false };
      remember(current);
      hideLeft();
      document.getElementById("upload-cancel").hidden = false;
      await sendChunks(current);
      if (!current.cancelled) say(`Sent ${humanBytes(file.size)}; the host is checking it (job ${current.job})…`, 100);
    } catch (error) {
      say(`The upload failed: ${error.message}`);
    } finally {
      form.querySelector("button[type=submit]").disabled = false;
    }
  });
  document.getElementById("upload-cancel").addEventListener("click", async () => {
    if (!current) return;
    current.cancelled = true;
    await fetch(`/api/jobs/${current.job}/cancel/`, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrf() } });
    say("Cancelled: the partial volume is being removed.");
  });
  document.addEventListener("vf:event", (ev) => {
    const e = ev.detail;
    if (e.type !== "job.updated" || !current || e.job.id !== current.job) return;
    if (["succeeded", "failed", "cancelled"].includes(e.job.status)) {
      forget(current.job);
      document.getElementById("upload-cancel").hidden = true;
    }
    if (e.job.status === "succeeded") say(`Done: ${e.job.message}`, 100);
    else if (e.job.status === "failed") say(`The upload failed: ${e.job.error}`);
    else if (e.job.status === "cancelled") say(`Cancelled: ${e.job.message}`);
  });
}

function hideLeft() {
  const box = document.getElementById("upload-left");
  if (box) box.hidden = true;
}
if (form) {
  const left = leftHere(Number(form.dataset.pool));
  const box = document.getElementById("upload-left");
  if (left.length && box) {
    box.hidden = false;
    box.textContent = left.length === 1
      ? `The upload of ${left[0].name} (${humanBytes(left[0].size)}, job ${left[0].job}) did not finish. Choose the same file and press Upload to go on where it stopped.`
      : `${left.length} uploads to this pool did not finish (${left.map((u) => u.name).join(", ")}). Choose one of those files and press Upload to go on where it stopped.`;
  }
}
