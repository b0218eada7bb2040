// The VM console page: noVNC against Virtfleet's console proxy, with a single-use ticket per
// connection. The page asks the server for a ticket, opens the websocket itself (so it can read the
// close code and reason the proxy sends when it refuses a ticket), hands it to noVNC's RFB, and
// keeps a status line: connecting / connected / disconnected: why.
import RFB from "../novnc/core/rfb.js";
import KeyTable from "../novnc/core/input/keysym.js";
import keysyms from "../novnc/core/input/keysymdef.js";

const app = document.getElementById("console-app");
const screenEl = document.getElementById("console-screen");
const stage = document.getElementById("console-stage");
const statusEl = document.getElementById("console-status");
const infoEl = document.getElementById("console-info");
const explain = document.getElementById("console-explain");
const vmName = app.dataset.vmName;
const hostName = app.dataset.hostName;

// What the page exposes for tests and the benchmark (timestamps are performance.now()).
const probe = (window.vfConsole = { state: "idle", connects: 0, firstFrameAt: null, lastClose: null });

// Close codes the console proxy uses (vms/console.py REFUSALS, vms/console_proxy.py).
const CLOSE_CODES = {
  4400: ["The connection carried no console ticket.", "Reconnect to get one."],
  4401: ["You are not signed in any more.", "Reload the page and sign in, then reconnect."],
  4403: ["The console proxy refused this connection", "Console tickets work only for the user they were issued to."],
  4404: ["The console ticket is not valid (never issued: forged or mistyped).", "Reconnect to get a new ticket."],
  4409: ["The console ticket was already used: each ticket opens one connection.", "Reconnect to get a new ticket."],
  4410: ["The console ticket expired before it was used.", "Reconnect to get a new ticket."],
  4502: ["The console proxy cannot reach the VM's VNC server.", "Check that the VM runs and its host is reachable from the console proxy."],
  4503: ["The VM's VNC server refused the console proxy.", "Its VNC password or security settings do not match what libvirt reports."],
  1000: ["The VM's console closed (the VM shut down, rebooted its display, or another client took over).", "Reconnect once it runs again."],
  1001: ["The console proxy went away (restarted or stopped).", "Reconnect in a moment."],
  1006: ["The connection to the console proxy was lost (or it is not running).", "Check that the console process runs, then reconnect."],
};

let rfb = null;
let socket = null;
let generation = 0; // ignore events from connections we already replaced
let everConnected = false; // in this connection

function setStatus(state, text) {
  probe.state = state;
  statusEl.className = `console-status status-${state}`;
  statusEl.querySelector(".text").textContent = text;
  app.dataset.state = state;
  const connected = state === "connected";
  app.querySelectorAll("[data-cmd='ctrl-alt-del'], [data-cmd='paste']").forEach((b) => (b.disabled = !connected));
  app.querySelectorAll("[data-needs-connection]").forEach((el) => {
    el.classList.toggle("disabled", !connected);
    if (!connected) el.removeAttribute("open");
  });
}

function showExplanation(title, text, hint = "") {
  document.getElementById("console-explain-title").textContent = title;
  document.getElementById("console-explain-text").textContent = text;
  document.getElementById("console-explain-hint").textContent = hint;
  explain.hidden = false;
}

function hideExplanation() {
  explain.hidden = true;
}

function describeClose(code, reason) {
  const known = CLOSE_CODES[code];
  if (code === 4403 && reason) {
    const why = reason === "ticket belongs to another user"
      ? "This console ticket was issued to another user."
      : reason === "origin not allowed"
        ? "The console was opened from a page of another site."
        : "You may not open this VM's console.";
    return [why, known[1]];
  }
  if (known) {
    // The proxy's own words carry the detail (e.g. which step of the VNC handshake failed).
    const detail = reason && ![4404, 4409, 4410, 4400, 4401].includes(code) && code !== 1006 ? ` (${reason})` : "";
    return [known[0] + detail, known[1]];
  }
  return [`The connection closed (code ${code}${reason ? `: ${reason}` : ""}).`, "Reconnect to try again."];
}

async function fetchTicket() {
  const response = await fetch(app.dataset.ticketUrl, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRFToken": app.dataset.csrf, Accept: "application/json" },
  });
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = { error: `The server answered ${response.status} ${response.statusText}.` };
  }
  if (!response.ok) {
    const error = new Error(body.error || `The server answered ${response.status}.`);
    error.code = body.code || String(response.status);
    throw error;
  }
  return body;
}

// First frame: the first animation frame after "connect" whose canvas shows anything but black.
function watchFirstFrame(gen) {
  const check = () => {
    if (gen !== generation || !rfb) return;
    const canvas = screenEl.querySelector("canvas");
    if (canvas && canvas.width > 0 && canvas.height > 0) {
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      for (let i = 0; i < data.length; i += 16) {
        if (data[i] > 24 || data[i + 1] > 24 || data[i + 2] > 24) {
          probe.firstFrameAt = performance.now();
          app.dataset.firstFrame = "1";
          return;
        }
      }
    }
    requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
}

function teardown() {
  generation += 1;
  if (rfb) {
    try {
      rfb.disconnect();
    } catch {
      /* already gone */
    }
  }
  rfb = null;
  socket = null;
  screenEl.replaceChildren();
}

export async function connect() {
  teardown();
  const gen = generation;
  hideExplanation();
  probe.firstFrameAt = null;
  everConnected = false;
  delete app.dataset.firstFrame;
  setStatus("connecting", "Connecting: asking for a console ticket…");
  let ticket;
  probe.ticketRequestedAt = performance.now();
  try {
    ticket = await fetchTicket();
  } catch (error) {
    if (gen !== generation) return;
    setStatus("unavailable", "Not available");
    showExplanation("The console is not available", error.message);
    return;
  }
  if (gen !== generation) return;
  probe.ticketAt = performance.now();
  probe.token = ticket.token;
  probe.url = ticket.url;
  setStatus("connecting", `Connecting to ${vmName}…`);
  try {
    socket = new WebSocket(ticket.url, ["binary"]);
  } catch (error) {
    setStatus("disconnected", `Disconnected: ${error.message}`);
    return;
  }
  socket.addEventListener("close", (ev) => {
    if (gen !== generation) return;
    probe.lastClose = { code: ev.code, reason: ev.reason };
    const [why, what] = describeClose(ev.code, ev.reason);
    setStatus("disconnected", `Disconnected: ${why}`);
    refreshSessions();
    showExplanation(everConnected ? "Disconnected" : "Could not connect", why, what);
  });
  rfb = new RFB(screenEl, socket, { shared: true });
  rfb.scaleViewport = true;
  rfb.background = "#000";
  rfb.resizeSession = false;
  rfb.focusOnClick = true;
  rfb.addEventListener("connect", () => {
    if (gen !== generation) return;
    everConnected = true;
    probe.connects += 1;
    probe.connectedAt = performance.now();
    const secure = ticket.url.startsWith("wss:") ? "encrypted" : "unencrypted (use https in production)";
    setStatus("connected", `Connected to ${vmName} on ${hostName}`);
    infoEl.textContent = `websocket ${secure}`;
    watchFirstFrame(gen);
    rfb.focus();
    refreshSessions(0);
  });
  rfb.addEventListener("securityfailure", (ev) => {
    if (gen !== generation) return;
    setStatus("disconnected", `Disconnected: the VNC security handshake failed (${ev.detail.reason || ev.detail.status})`);
  });
  rfb.addEventListener("desktopname", (ev) => {
    if (gen === generation && ev.detail.name) infoEl.textContent = ev.detail.name;
  });
}

// --- toolbar -----------------------------------------------------------------------------------------
const CODES = {
  Control_L: "ControlLeft", Alt_L: "AltLeft", Shift_L: "ShiftLeft", Super_L: "MetaLeft", Tab: "Tab",
  Escape: "Escape", BackSpace: "Backspace", Delete: "Delete", Print: "PrintScreen", Return: "Enter",
};

function keyFor(name) {
  if (/^F\d{1,2}$/.test(name)) return [KeyTable[`XK_${name}`], name];
  if (/^[a-z]$/.test(name)) return [KeyTable[`XK_${name}`], `Key${name.toUpperCase()}`];
  return [KeyTable[`XK_${name}`], CODES[name] || null];
}

function sendCombo(combo) {
  if (!rfb) return;
  const keys = combo.split(" ").map(keyFor);
  keys.forEach(([sym, code]) => rfb.sendKey(sym, code, true));
  [...keys].reverse().forEach(([sym, code]) => rfb.sendKey(sym, code, false));
  rfb.focus();
}

// US layout: character -> [physical key, shift?]. Typed by scancode so the guest sees real keys.
const SHIFTED = { "!": "Digit1", "@": "Digit2", "#": "Digit3", $: "Digit4", "%": "Digit5", "^": "Digit6", "&": "Digit7",
  "*": "Digit8", "(": "Digit9", ")": "Digit0", _: "Minus", "+": "Equal", "{": "BracketLeft", "}": "BracketRight",
  "|": "Backslash", ":": "Semicolon", '"': "Quote", "<": "Comma", ">": "Period", "?": "Slash", "~": "Backquote" };
const PLAIN = { "-": "Minus", "=": "Equal", "[": "BracketLeft", "]": "BracketRight", "\\": "Backslash", ";": "Semicolon",
  "'": "Quote", ",": "Comma", ".": "Period", "/": "Slash", "`": "Backquote", " ": "Space", "\t": "Tab", "\n": "Enter" };

function physicalKey(ch) {
  if (/^[a-z]$/.test(ch)) return [`Key${ch.toUpperCase()}`, false];
  if (/^[A-Z]$/.test(ch)) return [`Key${ch}`, true];
  if (/^[0-9]$/.test(ch)) return [`Digit${ch}`, false];
  if (ch in PLAIN) return [PLAIN[ch], false];
  if (ch in SHIFTED) return [SHIFTED[ch], true];
  return [null, false];
}

function typeText(text) {
  if (!rfb) return;
  for (const ch of text.replace(/\r\n?/g, "\n")) {
    const [code, shift] = physicalKey(ch);
    const sym = ch === "\n" ? KeyTable.XK_Return : ch === "\t" ? KeyTable.XK_Tab : keysyms.lookup(ch.codePointAt(0));
    if (shift) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", true);
    rfb.sendKey(sym, code, true);
    rfb.sendKey(sym, code, false);
    if (shift) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", false);
  }
  rfb.focus();
}

async function openPaste() {
  const dialog = document.getElementById("paste-dialog");
  const area = document.getElementById("paste-text");
  try {
    if (navigator.clipboard?.readText) area.value = await navigator.clipboard.readText();
  } catch {
    /* no permission: the operator pastes into the box */
  }
  dialog.showModal();
  area.focus();
  area.select();
}

document.getElementById("paste-dialog").addEventListener("close", (ev) => {
  const dialog = ev.target;
  if (dialog.returnValue !== "type") return;
  const text = document.getElementById("paste-text").value;
  typeText(text + (document.getElementById("paste-enter").checked ? "\n" : ""));
  if (rfb) rfb.clipboardPasteFrom(text); // guests with a clipboard agent get it as clipboard too
});

function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen();
  else stage.requestFullscreen().then(() => rfb?.focus()).catch(() => {});
}

app.addEventListener("click", (ev) => {
  const button = ev.target.closest("[data-cmd], [data-combo]");
  if (!button || button.disabled) return;
  if (button.dataset.combo) {
    sendCombo(button.dataset.combo);
    button.closest("details")?.removeAttribute("open");
    return;
  }
  const cmd = button.dataset.cmd;
  if (cmd === "ctrl-alt-del") {
    rfb?.sendCtrlAltDel();
    rfb?.focus();
  } else if (cmd === "paste") openPaste();
  else if (cmd === "fullscreen") toggleFullscreen();
  else if (cmd === "reconnect") connect();
});

// --- the sessions table ------------------------------------------------------------------------------
let sessionsTimer = null;
function refreshSessions(delay = 400) {
  clearTimeout(sessionsTimer);
  sessionsTimer = setTimeout(async () => {
    const holder = document.getElementById("console-sessions");
    const response = await fetch(app.dataset.sessionsUrl, { credentials: "same-origin" });
    if (response.ok) holder.innerHTML = await response.text();
  }, delay);
}

// A VM that comes back (started, migrated here) while the page shows why it could not connect.
document.addEventListener("vf:event", (ev) => {
  const event = ev.detail;
  if (event.type !== "vm.updated" || event.vm.uuid !== document.getElementById("vm-head").dataset.uuid) return;
  if (event.vm.state === "running" && probe.state !== "connected" && probe.state !== "connecting") {
    infoEl.textContent = `${vmName} is running: Reconnect to see it.`;
  }
});

window.addEventListener("beforeunload", teardown);

if (app.dataset.refusal) {
  setStatus("unavailable", "Not available");
} else {
  connect();
}
