// Small page behaviours: confirmations before dangerous operations, VM selection for bulk actions.

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  let question = form.dataset.confirm;
  if (!question && form.dataset.confirmDanger) {
    const action = form.querySelector("[name=action]")?.value;
    const count = document.querySelectorAll(`input[name=vms][form="${form.id}"]:checked`).length;
    if (form.dataset.confirmDanger.split(" ").includes(action)) {
      question = `Run "${form.querySelector("[name=action] option:checked").textContent}" on ${count} VM(s)? This cannot be undone.`;
    }
  }
  if (question && !window.confirm(question)) ev.preventDefault();
});

function updateSelection() {
  const form = document.getElementById("bulk-form");
  if (!form) return;
  const count = document.querySelectorAll('input[name=vms][form="bulk-form"]:checked').length;
  form.querySelectorAll("[data-selected-count]").forEach((el) => (el.textContent = String(count)));
  form.querySelectorAll("[data-needs-selection]").forEach((el) => (el.disabled = count === 0));
}

document.addEventListener("change", (ev) => {
  const all = ev.target.closest("[data-select-all]");
  if (all) {
    document.querySelectorAll('input[name=vms][form="bulk-form"]').forEach((box) => (box.checked = all.checked));
  }
  if (ev.target.matches('input[name=vms], [data-select-all]')) updateSelection();
});
updateSelection();
