// Host page: the sections other apps add (maintenance, ...) and the action buttons are refetched as
// events about this host or its jobs arrive (the VM table follows its rows itself: live.js).
const head = document.getElementById("host-head");
const hostId = head?.dataset.hostId;
let timer = null;

async function replace(el) {
  const name = el.dataset.fragment;
  const url = new URL(location.href);
  url.searchParams.set("fragment", name);
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) return;
  const html = (await response.text()).trim();
  if (name === "host-actions") el.outerHTML = html; // the fragment is the element itself
  else el.innerHTML = html;
}

function refresh() {
  clearTimeout(timer);
  timer = setTimeout(() => document.querySelectorAll("[data-fragment]").forEach(replace), 300);
}

document.addEventListener("vf:event", (ev) => {
  const event = ev.detail;
  if (!hostId) return;
  if (event.type === "job.updated" && (String(event.job.host) === hostId || event.job.parent)) refresh();
  if (event.type === "host.updated" && String(event.host.id) === hostId) refresh();
});
document.addEventListener("vf:refresh", refresh);
