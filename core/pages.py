"""Sections that apps add to another app's page, so no app imports the pages above it.

The host page shows the host (hosts), its VMs (vms) and its maintenance (migration); the VM page
shows the VM (vms), its console button (console) and its migration (migration). Each app registers
its sections once (AppConfig.ready); a page places them with ``{% page_sections "host" "main" host %}``
and serves one alone for a live refresh with ``?fragment=<name>`` (``section_fragment``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.shortcuts import render
from django.template.loader import render_to_string


@dataclass(frozen=True)
class Section:
    page: str  # "host", "vm"
    slot: str  # where on the page: "actions", "banner", "main"
    name: str  # its fragment name (?fragment=<name>) and element id
    template: str
    context: Callable[..., dict] | None = None  # (request, obj) → what its template needs
    fragment: str = ""  # what ?fragment=<name> renders (default: the template)
    order: int = 50
    script: str = ""  # a static JS module that makes it live (loaded once per page, whatever the sections)


_SECTIONS: list[Section] = []


def register_section(section: Section) -> None:
    if any(s.page == section.page and s.name == section.name for s in _SECTIONS):
        return  # registered already (an app's ready() may run twice in tests)
    _SECTIONS.append(section)
    _SECTIONS.sort(key=lambda s: (s.page, s.slot, s.order, s.name))


def sections(page: str, slot: str | None = None) -> list[Section]:
    return [s for s in _SECTIONS if s.page == page and (slot is None or s.slot == slot)]


def section_context(section: Section, request, obj) -> dict:
    return section.context(request, obj) if section.context else {}


def render_section(section: Section, request, obj, base: dict) -> str:
    return render_to_string(section.template, {**base, **section_context(section, request, obj)}, request=request)


def section_fragment(request, page: str, obj, base: dict):
    """The response for ``?fragment=<name>`` when a section of ``page`` has that name, else None."""
    name = request.GET.get("fragment")
    for section in sections(page):
        if section.name == name:
            context = {**base, **section_context(section, request, obj)}
            return render(request, section.fragment or section.template, context)
    return None


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str  # reversed for the link
    app_name: str  # the nav item is shown active on the pages of this URL namespace
    order: int = 50


_NAV: list[NavItem] = []


def register_nav(item: NavItem) -> None:
    """A main navigation entry of an app (between Hosts and Jobs, by order)."""
    if all(n.url_name != item.url_name for n in _NAV):
        _NAV.append(item)
        _NAV.sort(key=lambda n: (n.order, n.label))


def nav_items() -> list[NavItem]:
    return list(_NAV)
