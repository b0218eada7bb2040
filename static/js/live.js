// Live updates: one WebSocket per page to /ws/live/, no polling.
//
// The page declares what it shows with data attributes; this module subscribes to the matching
// topics, patches rows in place when typed events arrive (dropping ones older than what is shown,
// by version), reconnects with capped exponential backoff after a drop, and then refetches what
// the page shows so it never stays stale. Other modules listen to "vf:event" on document.
import { badge, escapeHtml, humanBytes, kib, timeAgo } from "./format.js";

const indicator = document.getElementById("live-indicator");
let socket = null;
let attempt = 0;
let everConnected = false;
let stopped = false;

function setIndicator(state, text) {
  if (!indicator) return;
  indicator.className = `live live-${state}`;
  indicator.querySelector(".live-text").textContent = text;
  indicator.title = `Live updates: ${text}`;
}

function topics() {
  const found = new Set();
  document.querySelectorAll("[data-live]").forEach((el) => {
    const hostFilter = el.dataset.hostFilter;
    if (el.dataset.live === "vms" && hostFilter) found.add(`host:${hostFilter}`);
    else if (el.dataset.live === "vms" || el.dataset.live === "hosts") found.add("fleet");
    else if (el.dataset.live === "jobs") found.add("jobs");
  });
  document.querySelectorAll("[data-topic]").forEach((el) => found.add(el.dataset.topic));
  const vmHead = document.getElementById("vm-head");
  if (vmHead) found.add(`vm:${vmHead.dataset.uuid}`);
  const hostHead = document.getElementById("host-head");
  if (hostHead) found.add(`host:${hostHead.dataset.hostId}`);
  return [...found];
}

function connect() {
  const wanted = topics();
  if (!wanted.length || stopped) {
    setIndicator("up", wanted.length ? "Live" : "Idle");
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  setIndicator("connecting", everConnected ? "Reconnecting…" : "Connecting…");
  socket = new WebSocket(`${scheme}://${location.host}/ws/live/`);
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ action: "subscribe", topics: wanted }));
  });
  socket.addEventListener("message", (msg) => {
    let event;
    try {
      event = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (event.type === "subscribed") {
      setIndicator("up", "Live");
      // Events sent between rendering the page and subscribing (or while the socket was down)
      // never reached us: refetch what the page shows once the subscription is in place.
      refreshAll();
      everConnected = true;
      attempt = 0;
      return;
    }
    handle(event);
  });
  socket.addEventListener("close", (ev) => {
    if (ev.code === 4401) {
      stopped = true;
      setIndicator("down", "Signed out — reload to sign in");
      return;
    }
    const delay = Math.min(10000, 500 * 2 ** attempt) * (0.8 + Math.random() * 0.4);
    attempt += 1;
    setIndicator("down", `Live updates down — retrying in ${Math.ceil(delay / 1000)} s`);
    setTimeout(connect, delay);
  });
}

// --- applying events ------------------------------------------------------------------------------
function handle(event) {
  if (event.type === "vm.updated") applyVM(event.vm);
  else if (event.type === "host.updated") applyHost(event.host);
  else if (event.type === "host.removed") removeHost(event.host_id);
  document.dispatchEvent(new CustomEvent("vf:event", { detail: event }));
}

// Every pushed object carries its version: an event older than what an element shows is dropped
// (events of one object can arrive out of order from different processes).
export function newer(el, version) {
  const shown = Number(el.dataset.version || 0);
  if (version <= shown) return false;
  el.dataset.version = String(version);
  return true;
}

function setField(root, field, html) {
  root.querySelectorAll(`[data-field="${field}"]`).forEach((cell) => {
    if (cell.innerHTML !== html) cell.innerHTML = html;
  });
}

function vmStateBadge(vm) {
  return vm.gone ? badge("gone", "gone") : badge(vm.state, vm.state_label);
}

function consoleCell(row, vm) {
  // The server decides who may open consoles (data-console on the row) and in which power states
  // a console opens (data-console-states on the table); here only the VM's own state is checked.
  const type = escapeHtml((vm.graphics_type || "—").toUpperCase());
  const states = (row.closest("table")?.dataset.consoleStates || "").split(" ");
  if (row.dataset.console && !vm.gone && vm.graphics_type === "vnc" && states.includes(vm.state)) {
    return `<a href="/vms/${vm.uuid}/console/" title="Open the VM's screen in this browser">${type}</a>`;
  }
  return `<span>${type}</span>`;
}

function templateTag(row, vm) {
  // a VM marked as a template (or made a regular VM again) gets (or loses) its tag in the name cell
  const cell = row.querySelector('a[data-field="name"]')?.parentElement;
  if (!cell) return;
  const tag = cell.querySelector('[data-field="template"]');
  if (vm.template && !tag) {
    cell.insertAdjacentHTML("beforeend", ' <span class="tag tag-template" title="A template: it never starts; new VMs are deployed from it" data-field="template">template</span>');
  } else if (!vm.template && tag) {
    tag.remove();
  }
}

function applyVM(vm) {
  const rows = document.querySelectorAll(`tr[data-uuid="${vm.uuid}"]`);
  rows.forEach((row) => {
    if (!newer(row, vm.version)) return;
    const hostFilter = row.closest("[data-host-filter]")?.dataset.hostFilter;
    if (hostFilter && String(vm.host) !== hostFilter) {
      // The VM left this host (migrated): it no longer belongs in this host's table.
      row.remove();
      showNotice(`${escapeHtml(vm.name)} moved to ${escapeHtml(vm.host_name)}.`);
      return;
    }
    setField(row, "state", vmStateBadge(vm));
    row.querySelectorAll('[data-field="host"]').forEach((cell) => {
      // a link only for users who may see the host (the server marks the cell)
      const html = cell.dataset.link
        ? `<a href="/hosts/${vm.host}/">${escapeHtml(vm.host_name)}</a>`
        : escapeHtml(vm.host_name);
      if (cell.innerHTML !== html) cell.innerHTML = html;
    });
    templateTag(row, vm);
    setField(row, "vcpus", String(vm.vcpus));
    setField(row, "memory", kib(vm.memory_kib));
    setField(row, "graphics", consoleCell(row, vm));
    setField(row, "state_changed", `<time datetime="${vm.state_changed}">${timeAgo(vm.state_changed)}</time>`);
    row.classList.toggle("gone", vm.gone);
    row.classList.remove("flash");
    void row.offsetWidth; // restart the highlight animation
    row.classList.add("flash");
  });
  const head = document.getElementById("vm-head");
  if (head && head.dataset.uuid === vm.uuid && newer(head, vm.version)) {
    setField(document, "state", vmStateBadge(vm));
    setField(document, "state_reason", escapeHtml(vm.state_reason));
    setField(document, "host_name", escapeHtml(vm.host_name));
    setField(document, "vcpus", String(vm.vcpus));
    setField(document, "memory", kib(vm.memory_kib));
    setField(document, "autostart", vm.autostart ? "on" : "off");
    setField(document, "managed_save", vm.managed_save ? "yes (starts from it)" : "none");
    document.querySelectorAll('a[data-field="host"]').forEach((a) => {
      a.href = `/hosts/${vm.host}/`;
      a.textContent = vm.host_name;
    });
  }
  if (!rows.length) noticeNewRows(vm);
  refreshSummarySoon();
}

// The fleet totals are refetched (at most every 2 s) rather than recomputed in the browser.
let summaryTimer = null;
function refreshSummarySoon() {
  const summary = document.getElementById("summary");
  if (!summary || summaryTimer) return;
  summaryTimer = setTimeout(async () => {
    summaryTimer = null;
    const response = await fetch(summary.dataset.summaryUrl, { credentials: "same-origin" });
    if (response.ok) summary.innerHTML = await response.text();
  }, 2000);
}

function showNotice(html) {
  const notice = document.getElementById("vm-notice");
  if (!notice) return;
  notice.innerHTML = `${html} <a href="#" data-action="refresh-vms">Refresh the list</a>`;
  notice.classList.add("show");
}

function noticeNewRows(vm) {
  const table = document.querySelector('[data-live="vms"]');
  if (!table || vm.gone) return;
  const hostFilter = table.dataset.hostFilter;
  if (hostFilter && String(vm.host) !== hostFilter) return;
  const notice = document.getElementById("vm-notice");
  if (!notice) return;
  notice.innerHTML = 'The list changed (VMs appeared or moved). <a href="#" data-action="refresh-vms">Refresh the list</a>';
  notice.classList.add("show");
}

let hostRowsTimer = null;
function refreshHostRowsSoon() {
  const tbody = document.getElementById("host-rows");
  if (!tbody || hostRowsTimer) return;
  hostRowsTimer = setTimeout(async () => {
    hostRowsTimer = null;
    await refreshFragment(tbody, tbody.dataset.fragmentUrl || location.href);
    const empty = document.getElementById("hosts-empty");
    if (empty) empty.hidden = tbody.querySelectorAll("tr").length > 0;
  }, 500);
}

function applyHost(host) {
  const shown = document.querySelectorAll(`#host-rows tr[data-host-id="${host.id}"]`).length > 0;
  const table = document.getElementById("host-table");
  // A list of "hosts needing attention" gains or loses rows as hosts change: refetch it.
  if (table && (!shown || table.dataset.complete === "0")) refreshHostRowsSoon();
  document.querySelectorAll(`[data-host-id="${host.id}"]`).forEach((row) => {
    if (row.dataset.version !== undefined && !newer(row, host.version)) return;
    setField(row, "status", badge(host.status, host.status.replace(/_/g, " ")) +
      (host.last_error && host.status !== "connected" ? `<div class="small muted" title="${escapeHtml(host.last_error)}">${escapeHtml(host.last_error.length > 110 ? host.last_error.slice(0, 109) + "…" : host.last_error)}</div>` : ""));
    if (host.vm_count !== undefined) {
      setField(row, "running_count", String(host.running_count));
      setField(row, "vm_count", String(host.vm_count));
    }
    if (host.memory_bytes) {
      const used = Math.max(0, host.memory_bytes - host.free_memory_bytes);
      const pct = Math.round((100 * used) / host.memory_bytes);
      // <meter>, not a styled width: the Content-Security-Policy allows no inline styles.
      setField(row, "memory", `<meter class="meter" min="0" max="100" low="80" high="95" optimum="0" value="${pct}" title="${pct} % used">${pct} %</meter> <span class="small">${humanBytes(used)} / ${humanBytes(host.memory_bytes)}</span>`);
    }
    setField(row, "last_seen", host.last_seen ? `<time datetime="${host.last_seen}">${timeAgo(host.last_seen)}</time>` : '<span class="muted">never</span>');
  });
  refreshSummarySoon();
  const err = document.getElementById("host-error");
  if (err && host.status === "connected") err.remove();
}

function removeHost(hostId) {
  document.querySelectorAll(`tr[data-host-id="${hostId}"]`).forEach((row) => row.remove());
}

// --- refetching after a reconnect -----------------------------------------------------------------
async function refreshFragment(container, url) {
  const response = await fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" });
  if (!response.ok) return;
  container.innerHTML = await response.text();
}

export async function refreshAll() {
  const tasks = [];
  document.querySelectorAll("[data-live='vms']").forEach((el) => {
    const url = new URL(location.href);
    url.searchParams.set("fragment", "vms");
    tasks.push(refreshFragment(el, url));
  });
  if (document.getElementById("host-rows")) refreshHostRowsSoon();
  const head = document.getElementById("vm-head");
  if (head) {
    tasks.push(
      fetch(`/api/vms/${head.dataset.uuid}/`, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : null))
        .then((vm) => {
          // Apply what the server says now unless an event already showed something newer.
          if (!vm || Number(head.dataset.version) > vm.version) return;
          head.dataset.version = String(vm.version - 1);
          applyVM(vm);
        }),
    );
  }
  document.dispatchEvent(new CustomEvent("vf:refresh"));
  refreshSummarySoon();
  await Promise.allSettled(tasks);
  const notice = document.getElementById("vm-notice");
  if (notice) notice.classList.remove("show");
}

document.addEventListener("click", (ev) => {
  const target = ev.target.closest("[data-action='refresh-vms']");
  if (target) {
    ev.preventDefault();
    refreshAll();
  }
});

connect();
