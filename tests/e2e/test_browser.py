"""The pages in real headless Chromium against the real ASGI server (daphne)."""

import pytest

from tests.e2e.conftest import screenshot
from tests.helpers import driver_uri

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_sign_in_and_see_the_fleet(page, stack, add_host_live):
    add_host_live("host-a", "host-a.xml")
    add_host_live("host-b", "host-b.xml")
    page.goto(stack.url + "/")
    rows = page.locator("#vm-rows tr")
    assert rows.count() == 4
    assert page.locator("#vm-rows tr", has_text="web-1").locator(".badge").inner_text().lower() == "running"
    assert page.locator("#host-rows tr").count() == 2
    page.wait_for_selector("#live-indicator.live-up")  # the live socket connected
    screenshot(page, "fleet")


def test_anonymous_visitor_is_sent_to_sign_in(browser, stack):
    context = browser.new_context()
    p = context.new_page()
    p.goto(stack.url + "/hosts/")
    assert "/login/" in p.url and p.locator("#id_username").is_visible()
    p.fill("#id_username", "nobody")
    p.fill("#id_password", "wrong")
    p.click("button[type=submit]")
    assert "Please enter a correct username and password" in p.content()
    context.close()


def test_add_host_form_shows_errors_then_adds(page, stack):
    page.goto(stack.url + "/hosts/add/")
    page.fill("#id_name", "kvm-07")
    page.fill("#id_uri", "qemu+ssh://root@/system")
    page.click("#host-form button[type=submit]")
    error = page.locator(".form-row.has-error .errorlist")
    assert "Invalid libvirt URI" in error.inner_text()
    screenshot(page, "add-host-error")
    page.fill("#id_uri", driver_uri("host-b.xml"))
    page.click("#host-form button[type=submit]")
    page.wait_for_url(stack.url + "/hosts/*/")
    assert "Host kvm-07 added" in page.locator(".alert-success").inner_text()
    # the worker reads the inventory and the page shows it live, without a reload
    page.wait_for_function(
        "document.querySelector('#vm-notice.show') || document.querySelectorAll('#vm-rows tr').length > 0"
    )
