"""What the list filters share (django-filter): strict ids, bounded search text, and the values a
filter form holds for templates. A malformed value in a query string is ignored, never an error,
on pages and in the API alike: the same FilterSet serves both."""

from __future__ import annotations

from types import SimpleNamespace

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.rest_framework import DjangoFilterBackend

from .params import parse_id


class IdField(forms.Field):
    """A database id: ASCII digits, positive, fits in a 64-bit column (core.params.parse_id)."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        pk = parse_id(value)
        if pk is None:
            raise ValidationError("not an id", code="invalid")
        return pk


class IdFilter(django_filters.Filter):
    field_class = IdField


class FlagField(forms.Field):
    """A yes/no query value: 1, true, yes, on (a checkbox) mean yes; anything else no."""

    def to_python(self, value) -> bool:
        return str(value or "").strip().lower() in ("1", "true", "yes", "on")


class FlagFilter(django_filters.Filter):
    field_class = FlagField


class SearchField(forms.CharField):
    """Free text: trimmed, cut to 200 characters (a longer paste still searches, never errors)."""

    def to_python(self, value):
        return (super().to_python(value) or "")[:200]


class SearchFilter(django_filters.CharFilter):
    """Free-text search; the FilterSet's ``method`` says what it matches."""

    field_class = SearchField


def values(filterset: django_filters.FilterSet, **names: str) -> SimpleNamespace:
    """The filter values in effect (invalid ones left out), for a template: ``filters.q`` etc.
    ``names`` renames filters for templates (``host_id="host"``)."""
    filterset.is_valid()
    data = getattr(filterset.form, "cleaned_data", {}) or {}
    found = {name: data.get(name) for name in filterset.filters}
    for alias, name in names.items():
        found[alias] = found.pop(name, None)
    for name, value in found.items():
        if value is None:
            found[name] = ""
        elif isinstance(value, str):
            found[name] = value.strip()[:200]
    found["active"] = any(v not in ("", None, False) for k, v in found.items() if k not in ("sort", "active"))
    return SimpleNamespace(**found)


class LenientFilterBackend(DjangoFilterBackend):
    """django-filter for API views, as lenient as the pages: a malformed value is ignored (the
    list is what the valid filters select), not a 400. The schema still documents every filter."""

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        return queryset if filterset is None else filterset.qs
