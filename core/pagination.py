"""Server-side pagination helpers shared by the tables."""

from django.core.paginator import Paginator

PER_PAGE_CHOICES = (25, 50, 100, 200)
DEFAULT_PER_PAGE = 50


def per_page(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return DEFAULT_PER_PAGE
    return number if number in PER_PAGE_CHOICES else DEFAULT_PER_PAGE


def paginate(queryset, request, *, default: int = DEFAULT_PER_PAGE):
    """Page of ``queryset`` from ?page= and ?per_page=; out-of-range pages give the last page."""
    size = per_page(request.GET.get("per_page", default))
    return Paginator(queryset, size).get_page(request.GET.get("page"))


def query_without(request, *keys: str) -> str:
    """The current query string minus ``keys`` (for building sort / page links)."""
    params = request.GET.copy()
    for key in keys:
        params.pop(key, None)
    encoded = params.urlencode()
    return f"{encoded}&" if encoded else ""
