// Host page: follow an evacuation (maintenance) live by refetching its panel as its jobs change.
const holder = document.querySelector('[data-fragment="maintenance"]');
let timer = null;

async function replace(name) {
  const el = document.querySelector(`[data-fragment="${name}"]`);
  if (!el) return;
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
  timer = setTimeout(() => {
    replace("maintenance");
    replace("host-actions");
  }, 300);
}

document.addEventListener("vf:event", (ev) => {
  const event = ev.detail;
  if (!holder) return;
  const hostId = holder.dataset.hostIdMaint;
  if (event.type === "job.updated" && (String(event.job.host) === hostId || event.job.parent)) refresh();
  if (event.type === "host.updated" && String(event.host.id) === hostId) refresh();
});
document.addEventListener("vf:refresh", refresh);
