"""People managing tokens in a real browser (headless Chromium), against a real server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.server import Server


class Visit:
    """A signed-in browser tab that screenshots every step."""

    def __init__(self, browser: Any, server: Server, folder: Path) -> None:
        self.context = browser.new_context(base_url=server.url, viewport={"width": 1200, "height": 800})
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        self.page = self.context.new_page()
        self.folder = folder
        self.step = 0

    def shot(self, name: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(self.folder / f"{self.step:02d}-{name}.png"), full_page=True)

    def sign_in(self, username: str, password: str) -> None:
        self.page.goto("/login")
        self.page.fill("#username", username)
        self.page.fill("#password", password)
        self.shot("sign-in")
        self.page.click("main button[type=submit]")
        self.page.wait_for_url("**/tokens")

    def close(self) -> None:
        self.context.close()


def auth_check(server: Server, value: str) -> int:
    return httpx.get(
        server.url + "/api/v1/auth/check", headers={"Authorization": f"Bearer {value}"}
    ).status_code


def test_create_use_regenerate_revoke_in_the_browser(browser: Any, web: Server, screenshots: Path) -> None:
    visit = Visit(browser, web, screenshots)
    page = visit.page
    visit.sign_in("alice", "alice-password")
    visit.shot("tokens-empty")
    assert page.locator("#no-tokens").is_visible()

    page.click("text=Generate new token")
    page.fill("#name", "GitHub Actions")
    page.check("input[value='repo:read']")
    page.check("input[value='job']")
    page.select_option("#expires", "never")
    assert page.locator("#no-expiry-warning").is_visible()
    visit.shot("new-token-no-expiration-warning")
    page.select_option("#expires", "30")
    assert not page.locator("#no-expiry-warning").is_visible()
    assert "repo:read" in page.content() and "enough for a pipeline" in page.content()
    visit.shot("new-token-form")
    with page.expect_response(
        lambda r: r.url.endswith("/tokens/new") and r.request.method == "POST"
    ) as created:
        page.click("main button[type=submit]")
    assert created.value.headers["cache-control"] == "no-store"
    visit.shot("token-created")
    value = page.input_value("#token-value")
    assert value.startswith("opat_")
    assert "will not be shown again" in page.content()

    page.click("#copy")
    assert page.evaluate("navigator.clipboard.readText()") == value

    assert (
        httpx.get(web.url + "/api/v1/user", headers={"Authorization": f"Bearer {value}"}).status_code == 200
    )

    page.goto("/tokens")
    row = page.locator("#tokens tbody tr", has_text="GitHub Actions")
    assert "expires in 29 days" in row.inner_text() or "expires in 30 days" in row.inner_text()
    deadline = time.monotonic() + 30
    while "Never used" in row.locator(".last-used").inner_text() and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    assert (
        "ago" in row.locator(".last-used").inner_text()
        or "just now" in row.locator(".last-used").inner_text()
    )
    assert "127.0.0.1" in (row.locator(".last-used").get_attribute("title") or "")
    visit.shot("tokens-last-used")

    row.locator("text=Regenerate").click()
    assert "stops working at once" in page.content()
    visit.shot("regenerate-confirm")
    page.click("main button[type=submit]")
    new_value = page.input_value("#token-value")
    visit.shot("regenerated")
    assert new_value != value
    assert auth_check(web, value) == 401
    assert auth_check(web, new_value) == 204

    page.goto("/tokens")
    page.locator("#tokens tbody tr", has_text="GitHub Actions").locator("text=Revoke").click()
    visit.shot("revoke-confirm")
    page.click("main button[type=submit]")
    page.wait_for_url("**/tokens?flash=*")
    visit.shot("revoked")
    assert "Revoked" in page.locator(".flash").inner_text()
    assert page.locator("#no-tokens").is_visible()
    assert auth_check(web, new_value) == 401

    page.click(".tabs a:has-text('Revoked')")
    revoked_row = page.locator("#tokens tbody tr", has_text="GitHub Actions")
    assert revoked_row.count() == 1
    revoked_row.locator("a", has_text="GitHub Actions").click()
    visit.shot("history")
    events = page.locator("#history tbody tr td:nth-child(2)").all_inner_texts()
    # Uses are written per usage window, so a window's Used event may land after the revocation.
    assert [e for e in events if e != "Used"] == ["Created", "Regenerated", "Revoked"]
    assert "Used" in events
    visit.close()


def test_reloading_the_created_page_never_shows_the_value_again(
    browser: Any, web: Server, screenshots: Path
) -> None:
    visit = Visit(browser, web, screenshots)
    page = visit.page
    visit.sign_in("alice", "alice-password")
    page.goto("/tokens/new")
    page.fill("#name", "Local CLI")
    page.check("input[value='repo']")
    page.click("main button[type=submit]")
    value = page.input_value("#token-value")
    page.reload()
    visit.shot("after-reload")
    assert value not in page.content()
    page.goto("/tokens")
    assert value not in page.content()
    visit.close()


def test_member_cannot_see_another_members_tokens(browser: Any, web: Server, screenshots: Path) -> None:
    alice = Visit(browser, web, screenshots)
    alice.sign_in("alice", "alice-password")
    alice.page.goto("/tokens/new")
    alice.page.fill("#name", "Jenkins CI")
    alice.page.check("input[value='job']")
    alice.page.click("main button[type=submit]")
    alice.page.goto("/tokens")
    token_path = alice.page.locator("#tokens a", has_text="Jenkins CI").get_attribute("href")
    assert token_path
    alice.close()

    bob = Visit(browser, web, screenshots)
    bob.sign_in("bob", "bob-password")
    assert "Jenkins CI" not in bob.page.content()
    response = bob.page.goto(token_path)
    bob.shot("other-members-token")
    assert response is not None and response.status == 404
    response = bob.page.goto("/admin/tokens")
    bob.shot("admin-page-forbidden")
    assert response is not None and response.status == 403
    bob.close()


def test_form_posted_without_csrf_token_is_refused(browser: Any, web: Server, screenshots: Path) -> None:
    visit = Visit(browser, web, screenshots)
    visit.sign_in("alice", "alice-password")
    response = visit.page.request.post(
        "/tokens/new", form={"name": "Forged", "scopes": "repo", "expires": "30"}, max_redirects=0
    )
    assert response.status == 403
    visit.page.goto("/tokens?state=all")
    assert "Forged" not in visit.page.content()
    response = visit.page.request.post("/logout", form={"csrf_token": "wrong"}, max_redirects=0)
    assert response.status == 403

    # The same in the page itself: the form, stripped of its CSRF field, submitted by the browser.
    page = visit.page
    page.goto("/tokens/new")
    page.fill("#name", "Forged in the page")
    page.check("input[value='repo']")
    page.evaluate("document.querySelector('main form input[name=csrf_token]').remove()")
    with page.expect_navigation() as refused:
        page.click("main button[type=submit]")
    visit.shot("csrf-refused")
    assert refused.value is not None and refused.value.status == 403
    page.goto("/tokens?state=all")
    assert "Forged in the page" not in page.content()
    visit.close()


def test_session_cookie_and_page_headers_are_strict(browser: Any, web: Server, screenshots: Path) -> None:
    visit = Visit(browser, web, screenshots)
    visit.sign_in("alice", "alice-password")
    cookie = next(c for c in visit.context.cookies() if c["name"] == "tl_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    response = visit.page.goto("/tokens")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    visit.close()


def test_failed_sign_ins_are_throttled(browser: Any, web: Server, screenshots: Path) -> None:
    visit = Visit(browser, web, screenshots)
    page = visit.page
    for _ in range(10):
        page.goto("/login")
        page.fill("#username", "alice")
        page.fill("#password", "wrong-password")
        page.click("main button[type=submit]")
        assert "Incorrect username or password" in page.content()
    page.goto("/login")
    page.fill("#username", "alice")
    page.fill("#password", "alice-password")  # even the right password waits now
    page.click("main button[type=submit]")
    visit.shot("throttled")
    assert "Too many failed sign-ins" in page.content()
    visit.close()


def test_admin_sees_every_owner_and_the_compliance_report(
    browser: Any, web: Server, screenshots: Path
) -> None:
    alice = Visit(browser, web, screenshots)
    alice.sign_in("alice", "alice-password")
    alice.page.goto("/tokens/new")
    alice.page.fill("#name", "Forever")
    alice.page.check("input[value='admin:org']")
    alice.page.select_option("#expires", "never")
    alice.page.click("main button[type=submit]")
    alice.close()

    assert web.admin_password
    admin = Visit(browser, web, screenshots)
    admin.sign_in("admin", web.admin_password)
    admin.page.goto("/admin/tokens")
    admin.shot("all-tokens")
    assert "Forever" in admin.page.content() and "alice" in admin.page.content()
    admin.page.goto("/admin/compliance")
    admin.shot("compliance")
    findings = admin.page.locator("#findings tbody").inner_text()
    assert "never expires" in findings and "admin:org" in findings
    csv = admin.page.request.get("/api/v1/reports/compliance?format=csv")
    assert csv.status == 200 and "no_expiry" in csv.text()
    admin.page.fill("#owner", "alice")
    admin.page.click("text=Revoke matching tokens")
    admin.shot("bulk-revoked")
    assert "Revoked 1 tokens" in admin.page.content()
    admin.close()
