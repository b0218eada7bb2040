"""Formatting helpers for Virtfleet templates (kept in step with static/js/format.js)."""

from django import template
from django.utils.html import format_html

register = template.Library()

_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


@register.filter
def human_bytes(value) -> str:
    try:
        size = float(value or 0)
    except (TypeError, ValueError):
        return "—"
    unit = 0
    while size >= 1024 and unit < len(_UNITS) - 1:
        size /= 1024
        unit += 1
    if unit == 0:
        return f"{int(size)} B"
    return f"{size:.1f} {_UNITS[unit]}" if size < 10 else f"{size:.0f} {_UNITS[unit]}"


@register.filter
def kib(value) -> str:
    try:
        return human_bytes(int(value or 0) * 1024)
    except (TypeError, ValueError):
        return "—"


@register.simple_tag
def job_badge(status: str, label: str = "") -> str:
    """A job status badge: a running job is blue, not the green of a running VM."""
    return badge("job-running" if status == "running" else status, label or status)


@register.simple_tag
def badge(state: str, label: str = "") -> str:
    state = state or "unknown"
    return format_html('<span class="badge {}">{}</span>', state, label or state.replace("_", " "))


@register.simple_tag(takes_context=True)
def sort_link(context, key: str, label: str) -> str:
    """A column header that sorts by ``key``, toggling direction, keeping the other filters."""
    current = context.get("sort", "")
    query = context.get("sort_query", "")
    if current == key:
        target, arrow, cls = f"-{key}", " ▲", "sorted"
    elif current == f"-{key}":
        target, arrow, cls = key, " ▼", "sorted"
    else:
        target, arrow, cls = key, "", ""
    return format_html('<a class="{}" href="?{}sort={}">{}{}</a>', cls, query, target, label, arrow)


@register.filter
def percent_of(part, whole) -> int:
    try:
        return round(100 * float(part or 0) / float(whole)) if whole else 0
    except (TypeError, ValueError, ZeroDivisionError):
        return 0
