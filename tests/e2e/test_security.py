"""Security in real Chromium against the real stack: no page breaks the Content-Security-Policy (not
even the console, connected to a lab guest), the new pages look right, a scoped user sees only their
part, and the live socket refuses pages of other sites."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.e2e.conftest import screenshot, sign_in, signed_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(
  `${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile || location.pathname}:${e.lineNumber}`));
"""


@pytest.fixture
def strict_page(browser, stack, e2e_user):
    """A signed-in page under the real Content-Security-Policy (no bypass, unlike the ``page`` fixture)."""
    with signed_in(browser, stack.url, real_csp=True) as p:
        yield p


def a_running_vm(lab_hosts):
    """A VM of the first lab host that runs (it may have been migrated there and back by earlier
    tests: no fresh boot banner to wait for, but a screen all the same)."""
    from vms.models import VM

    return VM.objects.filter(host=lab_hosts[0], state="running").order_by("name").first()


def watch(page) -> list[str]:
    """Every CSP violation the browser reports, from the console and from the page's own events."""
    seen: list[str] = []
    page.context.add_init_script(WATCH_CSP)
    page.on("console", lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None)
    return seen


def violations(page, seen: list[str]) -> list[str]:
    return seen + (page.evaluate("window.__csp || []") or [])


def visit(page, seen, url: str, *, wait: str = "") -> None:
    page.goto(url)
    if wait:
        page.wait_for_selector(wait)
    page.wait_for_timeout(300)  # late scripts and fragment refreshes
    assert violations(page, seen) == [], f"{url}: {violations(page, seen)}"


def test_no_page_breaks_the_content_security_policy(strict_page, console_stack, lab_state, lab_hosts):
    from jobs.models import Job

    page = strict_page
    seen = watch(page)
    base = console_stack.url
    vm = a_running_vm(lab_hosts)
    uuid = str(vm.uuid)
    job = Job.objects.create(kind="reboot", vm=vm, vm_uuid=vm.uuid, vm_name=vm.name, host=vm.host,
                             host_name=vm.host.name, status="running", progress=40, message="half-way")  # fmt: skip
    visit(page, seen, base + "/", wait="#live-indicator.live-up")
    visit(page, seen, base + "/hosts/")
    visit(page, seen, f"{base}/hosts/{vm.host_id}/", wait="#live-indicator.live-up")
    visit(page, seen, f"{base}/vms/{uuid}/", wait="#live-indicator.live-up")
    visit(page, seen, f"{base}/vms/{uuid}/migrate/")
    page.locator("#targets input[type=radio]:not([disabled])").first.check()
    page.wait_for_selector("#checks li.ok, #checks li.bad")  # the pre-flight fetch (POST with the CSRF token)
    assert "CSRF" not in page.locator("#checks").inner_text()
    visit(page, seen, base + "/jobs/")
    visit(page, seen, f"{base}/jobs/{job.pk}/")
    Job.objects.filter(pk=job.pk).update(status="succeeded", progress=100)
    visit(page, seen, f"{base}/vms/{uuid}/console/")
    page.wait_for_selector("#console-app[data-first-frame='1']", timeout=20000)  # no eval: the CSP holds
    assert violations(page, seen) == []  # noVNC and its websocket to the console proxy (connect-src)
    visit(page, seen, base + "/audit/")
    screenshot(page, "audit-log")
    visit(page, seen, base + "/account/tokens/")
    page.fill("#id_name", "backup script")
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#token-created")
    page.click("[data-copy]")
    page.wait_for_selector("[data-copied]:not([hidden])")
    assert violations(page, seen) == []
    screenshot(page, "api-tokens")
    visit(page, seen, base + "/api/docs/", wait=".swagger-ui .info")
    visit(page, seen, base + "/admin/")
    visit(page, seen, f"{base}/admin/hosts/host/{vm.host_id}/permissions/")
    visit(page, seen, f"{base}/admin/auth/user/")
    visit(page, seen, f"{base}/admin/auth/user/{page_user_id(page)}/change/")
    visit(page, seen, f"{base}/admin/audit/auditevent/")
    page.context.clear_cookies()
    visit(page, seen, base + "/login/")


def page_user_id(page) -> int:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="operator").pk


def test_a_scoped_viewer_sees_their_vm_only_and_a_clear_refusal_elsewhere(
    browser, stack, lab_state, lab_hosts, django_user_model
):
    from guardian.shortcuts import assign_perm

    from vms.models import VM

    mine = a_running_vm(lab_hosts)
    other = VM.objects.filter(host=lab_hosts[1]).first()
    user = django_user_model.objects.create_user(username="vera", password="e2e-Password-3")
    assign_perm("vms.view_vm", user, mine)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    p = context.new_page()
    seen = watch(p)
    sign_in(p, stack.url, "vera", "e2e-Password-3")
    p.wait_for_selector("#live-indicator.live-up")
    names = p.locator("#vm-rows tr [data-field=name]").all_inner_texts()
    assert names == [mine.name]
    screenshot(p, "fleet-scoped-viewer")
    p.goto(f"{stack.url}/vms/{mine.uuid}/")
    assert p.locator("#vm-actions [data-read-only]").is_visible()
    assert p.locator("#vm-actions [data-action]").count() == 0
    response = p.goto(f"{stack.url}/vms/{other.uuid}/")
    assert response.status == 403
    assert "You may not see this VM: ask an administrator" in p.locator(".refusal-message").inner_text()
    assert other.name not in p.content()
    screenshot(p, "403")
    assert violations(p, seen) == []
    context.close()


def test_the_live_socket_refuses_pages_of_other_sites(stack, e2e_user):
    from django.test import Client

    client = Client()
    client.force_login(e2e_user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    url = stack.url.replace("http://", "ws://") + "/ws/live/"
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(url, origin="http://evil.example.com", additional_headers={"Cookie": cookie}, open_timeout=5)
    assert refused.value.response.status_code == 403
    with ws_connect(url, origin=stack.url, additional_headers={"Cookie": cookie}, open_timeout=5) as ws:
        assert '"hello"' in ws.recv(timeout=5)
