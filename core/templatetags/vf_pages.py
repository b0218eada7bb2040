"""``{% page_sections "host" "main" host %}``: the sections apps added to a slot of a page (core.pages)."""

from django import template
from django.utils.safestring import mark_safe

from core.pages import render_section, sections

register = template.Library()


@register.simple_tag(takes_context=True)
def page_sections(context, page: str, slot: str, obj):
    request = context.get("request")
    base = context.flatten()
    return mark_safe("".join(render_section(s, request, obj, base) for s in sections(page, slot)))  # noqa: S308 (rendered templates, escaped there)
