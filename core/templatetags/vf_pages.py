"""``{% page_sections "host" "main" host %}``: the sections apps added to a slot of a page (core.pages)."""

from django import template
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core.pages import nav_items, render_section, sections

register = template.Library()


@register.simple_tag(takes_context=True)
def page_sections(context, page: str, slot: str, obj):
    """The sections, each followed by its script (a module: the browser runs one URL once)."""
    request = context.get("request")
    base = context.flatten()
    parts = []
    for s in sections(page, slot):
        parts.append(render_section(s, request, obj, base))
        if s.script:
            parts.append(format_html('<script type="module" src="{}"></script>', static(s.script)))
    return mark_safe("".join(parts))  # noqa: S308 (rendered templates, escaped there)


@register.simple_tag(takes_context=True)
def app_nav(context):
    """The main navigation entries apps registered (core.pages.register_nav)."""
    request = context.get("request")
    current = getattr(getattr(request, "resolver_match", None), "app_name", "")
    return format_html_join("", '<a href="{}" class="{}">{}</a>', (
        (reverse(item.url_name), "active" if item.app_name == current else "", item.label) for item in nav_items()
    ))  # fmt: skip
