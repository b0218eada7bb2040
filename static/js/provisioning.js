// The New VM form: show the fields of the chosen install source; a change of host re-renders the
// form with what that host offers (its pools, ISOs, networks, firmware), keeping what was typed.
const form = document.getElementById("vm-form");
if (form) {
  const show = () => {
    const source = form.querySelector("input[name=source]:checked")?.value || "iso";
    for (const el of form.querySelectorAll("[data-show]")) {
      el.hidden = !el.dataset.show.split(" ").includes(source);
    }
  };
  for (const radio of form.querySelectorAll("[data-source]")) radio.addEventListener("change", show);
  show();
  // a host bridge's name is asked only for a NIC on a host bridge
  for (const select of form.querySelectorAll("select[name^=nic]:not([name$=_model])")) {
    const bridge = form.querySelector(`input[name="${select.name}_bridge"]`);
    if (!bridge) continue;
    const toggle = () => { bridge.hidden = select.value !== "bridge:"; };
    select.addEventListener("change", toggle);
    toggle();
  }
  const host = form.querySelector("[data-refresh]");
  const refresh = document.getElementById("refresh-btn");
  if (host && refresh) {
    refresh.hidden = true;
    host.addEventListener("change", () => refresh.click());
  }
}

// The clone form: what a linked clone asks is shown only for it; a change of host re-renders the form
// with that host's pools.
const cloneForm = document.getElementById("clone-form");
if (cloneForm) {
  const showMode = () => {
    const mode = cloneForm.querySelector("input[name=mode]:checked")?.value || "full";
    for (const el of cloneForm.querySelectorAll("[data-show-mode]")) el.hidden = el.dataset.showMode !== mode;
  };
  for (const radio of cloneForm.querySelectorAll("[data-mode]")) radio.addEventListener("change", showMode);
  showMode();
  const host = cloneForm.querySelector("[data-refresh]");
  const refresh = document.getElementById("clone-refresh");
  if (host && refresh) {
    refresh.hidden = true;
    host.addEventListener("change", () => refresh.click());
  }
}
