// Formatting shared by live updates; kept in step with dashboard/templatetags/vf.py.
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function humanBytes(value) {
  let size = Number(value || 0);
  let unit = 0;
  while (size >= 1024 && unit < UNITS.length - 1) {
    size /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${Math.trunc(size)} B`;
  return size < 10 ? `${size.toFixed(1)} ${UNITS[unit]}` : `${Math.round(size)} ${UNITS[unit]}`;
}

export const kib = (value) => humanBytes(Number(value || 0) * 1024);

export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function badge(state, label) {
  const s = state || "unknown";
  return `<span class="badge ${escapeHtml(s)}">${escapeHtml(label || s.replace(/_/g, " "))}</span>`;
}

export function timeAgo(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${Math.round(seconds)} seconds ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} minutes ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} hours ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}
