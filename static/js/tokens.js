// API tokens page: copy a new token to the clipboard (it is shown only once).
document.addEventListener("click", async (ev) => {
  const button = ev.target.closest("[data-copy]");
  if (!button) return;
  const field = document.querySelector(button.dataset.copy);
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
  } catch {
    document.execCommand("copy"); // no clipboard permission (plain http): the selected text is copied
  }
  const note = button.parentElement.querySelector("[data-copied]");
  if (note) note.hidden = false;
});
