"""VM pages. Read the database only; operations go through services and jobs."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils.safestring import mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import XmlLexer

from dashboard.errors import NotFound

from .selectors import vm_get


def _vm_or_404(uuid):
    try:
        return vm_get(uuid=uuid)
    except NotFound as exc:
        raise Http404(exc.message) from None


@login_required
def vm_detail(request, uuid):
    vm = _vm_or_404(uuid)
    xml_html = mark_safe(highlight(vm.xml, XmlLexer(), HtmlFormatter(cssclass="xml"))) if vm.xml else ""  # noqa: S308 (pygments escapes)
    return render(request, "vms/detail.html", {"vm": vm, "xml_html": xml_html})
