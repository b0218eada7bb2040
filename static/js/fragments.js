// Page fragments re-rendered by the server (?fragment=<name>, the data-fragment="<name>" element),
// fetched again when events say what they show changed. Events come in bursts (a pool refresh
// re-reads every volume, a resync every network): each fragment is fetched once per burst.
async function refetch(name) {
  const el = document.querySelector(`[data-fragment="${name}"]`);
  if (!el) return;
  const url = new URL(location.href);
  url.searchParams.set("fragment", name);
  const response = await fetch(url, { credentials: "same-origin" });
  if (response.ok) el.innerHTML = await response.text();
}

const pending = new Set();
let timer = null;
export function refetchSoon(...names) {
  names.forEach((n) => pending.add(n));
  clearTimeout(timer);
  timer = setTimeout(() => {
    const batch = [...pending];
    pending.clear();
    batch.forEach(refetch);
  }, 300);
}
