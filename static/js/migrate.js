// Migrate dialog: run the pre-flight checks for the chosen target and options as they change.
import { escapeHtml } from "./format.js";

const form = document.getElementById("migrate-form");
const list = document.getElementById("checks");
const submit = document.getElementById("migrate-submit");
let timer = null;
let seq = 0;

async function check() {
  const data = new FormData(form);
  if (!data.get("target")) return;
  const mine = ++seq;
  list.innerHTML = '<li class="muted">Checking both hosts…</li>';
  submit.disabled = true;
  let body;
  try {
    const response = await fetch(form.dataset.checkUrl, { method: "POST", body: data, credentials: "same-origin" });
    body = await response.json();
  } catch (err) {
    body = { ok: false, error: `The checks could not run: ${err}` };
  }
  if (mine !== seq) return; // a newer check is on its way
  if (body.error) {
    list.innerHTML = `<li class="bad">${escapeHtml(body.error)}</li>`;
  } else {
    list.innerHTML = body.checks
      .map((c) => `<li class="${c.ok ? "ok" : "bad"}"><strong>${escapeHtml(c.name)}</strong> — ${escapeHtml(c.message)}</li>`)
      .join("");
  }
  submit.disabled = !body.ok;
}

form.addEventListener("change", () => {
  clearTimeout(timer);
  timer = setTimeout(check, 250);
});
form.addEventListener("input", (ev) => {
  if (ev.target.type !== "number") return;
  clearTimeout(timer);
  timer = setTimeout(check, 600);
});
if (new FormData(form).get("target")) check();
