// The deploy form: the names the pattern gives, shown as they are typed (the same rules as
// provisioning.templates.expand_pattern on the server, which checks them again), and the cloud-init
// fields shown only when cloud-init is on.
const form = document.getElementById("deploy-form");
const TOKEN = /\{([^{}]*)\}/g;
const N = /^n(?::0?([1-9])d?)?$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function expand(pattern, count, first) {
  pattern = pattern.trim();
  if (!pattern) return { error: "Give a name pattern, such as web-{n}." };
  const tokens = [...pattern.matchAll(TOKEN)].map((m) => m[1]);
  const bad = tokens.find((t) => !N.test(t));
  if (bad !== undefined) return { error: `{${bad}} is not a placeholder: use {n}, or {n:02} for 01, 02…` };
  const rest = pattern.replace(TOKEN, "");
  if (rest.includes("{") || rest.includes("}")) return { error: "A lone { or } is not allowed." };
  if (count > 1 && !tokens.length) return { error: `${count} VMs need ${count} names: put {n} in the pattern.` };
  const names = [];
  for (let n = first; n < first + count; n++) {
    names.push(pattern.replace(TOKEN, (_m, t) => {
      const width = N.exec(t)[1];
      return width ? String(n).padStart(Number(width), "0") : String(n);
    }));
  }
  const wrong = names.find((name) => !NAME.test(name));
  if (wrong) return { error: `${wrong} is not a VM name (letters, digits, dots, dashes, underscores).` };
  return { names };
}

function preview() {
  const out = document.getElementById("name-preview");
  const count = Math.max(1, Math.min(50, parseInt(form.count.value, 10) || 1));
  const first = Math.max(0, parseInt(form.first.value, 10) || 0);
  const pattern = form.name_pattern.value || form.name_pattern.placeholder;
  const { names, error } = expand(pattern, count, first);
  out.replaceChildren();
  if (error) {
    out.classList.add("error-text");
    out.textContent = error;
    return;
  }
  out.classList.remove("error-text");
  const shown = names.length > 12 ? [...names.slice(0, 5), "…", ...names.slice(-5)] : names;
  for (const name of shown) {
    const tag = document.createElement("span");
    tag.className = name === "…" ? "muted" : "tag mono";
    tag.textContent = name;
    out.append(tag, " ");
  }
}

function cloudInit() {
  const on = form.cloud_init.checked;
  for (const el of form.querySelectorAll("[data-ci]")) el.hidden = !on;
}

if (form) {
  if (!form.name_pattern.value) form.name_pattern.value = form.name_pattern.placeholder;
  for (const name of ["count", "name_pattern", "first"]) form[name].addEventListener("input", preview);
  form.cloud_init.addEventListener("change", cloudInit);
  preview();
  cloudInit();
}
