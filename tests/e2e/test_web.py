"""The web page in real headless Chromium against the real app, store and demo endpoint."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from lambdaop.demo import DemoLambda
from lambdaop.runtime import Runtime

WAIT = 20_000  # ms: generous bounds on events, never fixed sleeps


@pytest.fixture
def app(make_runtime) -> Runtime:
    runtime = make_runtime()
    runtime.users.set_password("admin", "admin-password")
    runtime.users.add("bob")
    runtime.users.set_password("bob", "bob-password")
    return runtime


def open_page(browser: Any, runtime: Runtime, width: int = 1280) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 900}, timezone_id="Europe/Berlin")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(runtime.url + "/")
    return page


def sign_in(page: Page, name: str, password: str) -> None:
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text(f"Signed in as {name}", timeout=WAIT)


def local_input(seconds: float, zone_hours: int = 1) -> str:
    """A datetime-local value `seconds` from now in the page's zone (Europe/Berlin, UTC+1 in November)."""
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds) + dt.timedelta(hours=zone_hours)
    return at.strftime("%Y-%m-%dT%H:%M:%S")


def schedule(page: Page, url: str, seconds: float, name: str) -> None:
    if not page.locator("#task-form").is_visible():
        page.get_by_role("button", name="New Task").click()
    page.get_by_label("URL").fill(url)
    page.get_by_label("Date and time").fill(local_input(seconds))
    page.get_by_label("Name (optional)").fill(name)
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.locator("#alert")).to_contain_text(f"Task {name} scheduled", timeout=WAIT)


def test_schedule_watch_it_complete_and_open_its_history(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    page = open_page(browser, app)
    page.screenshot(path=str(screenshots / "sign-in-1280.png"))
    sign_in(page, "admin", "admin-password")
    schedule(page, demo.url + "/ok", 3, "soon")
    row = page.locator("tr[data-name='soon']")
    expect(row).to_be_visible()
    expect(row.locator("time")).to_have_attribute("title", re.compile(r"Z \(UTC\)$"))
    page.screenshot(path=str(screenshots / "tasks-1280.png"), full_page=True)
    page.get_by_role("tab", name=re.compile("^completed")).click()
    # no reload: the list refreshes itself while open
    expect(page.locator("tr[data-name='soon']")).to_be_visible(timeout=WAIT)
    expect(page.locator("tr[data-name='soon'] [data-state]")).to_have_text("completed")
    expect(page.locator("[data-count='completed']")).to_have_text("1")
    page.get_by_role("link", name="soon").click()
    expect(page.locator("#attempts tbody tr")).to_have_count(1, timeout=WAIT)
    expect(page.locator("#attempts")).to_contain_text("HTTP 200")
    page.screenshot(path=str(screenshots / "task-detail-1280.png"), full_page=True)
    assert len(demo.calls("/ok")) == 1
    assert not page.errors  # type: ignore[attr-defined]


def test_modify_and_cancel_from_the_page(browser, app: Runtime, demo: DemoLambda) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    schedule(page, demo.url + "/ok?moved", 3600, "moved")
    schedule(page, demo.url + "/ok?dropped", 3600, "dropped")
    moved = page.locator("tr[data-name='moved']")
    moved.get_by_role("button", name="Modify the time of moved").click()
    moved.get_by_label("New time").fill(local_input(1.5))
    moved.get_by_role("button", name="Save").click()
    expect(page.locator("#alert")).to_contain_text("New time saved", timeout=WAIT)
    dropped = page.locator("tr[data-name='dropped']")
    dropped.get_by_role("button", name="Cancel dropped").click()
    expect(page.locator("#alert")).to_contain_text("Cancelled", timeout=WAIT)
    demo.wait_for(1, "/ok", timeout=20)
    page.get_by_role("tab", name=re.compile("^completed")).click()
    done = page.locator("tr[data-name='moved']")
    expect(done).to_be_visible(timeout=WAIT)
    expect(done.get_by_role("button")).to_have_count(0)  # nothing to modify or cancel once it ran
    page.get_by_role("tab", name=re.compile("^cancelled")).click()
    expect(page.locator("tr[data-name='dropped'] [data-state]")).to_have_text("cancelled", timeout=WAIT)
    expect(page.locator("tr[data-name='dropped']").get_by_role("button")).to_have_count(0)
    assert [c.query for c in demo.calls("/ok")] == ["moved"]


def test_taskset_steps_and_the_retried_check(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    page.get_by_role("link", name="TaskSets").click()
    page.get_by_role("button", name="New TaskSet").click()
    page.get_by_label("Task URLs, in order (one per line)").fill(
        "\n".join(f"{demo.url}/ok?t{i}" for i in range(1, 4))
    )
    page.get_by_label("Condition check URL (optional)").fill(demo.url + "/flaky/check?fails=1")
    page.get_by_label("Fallback URL (optional)").fill(demo.url + "/ok?fallback")
    page.get_by_label("Delay before each check").fill("200ms")
    page.get_by_label("Check retries").fill("2")
    page.get_by_label("Delay between checks").fill("300ms")
    page.get_by_label("Name (optional)").fill("release")
    page.get_by_role("button", name="Orchestrate").click()
    expect(page.locator("#alert")).to_contain_text("TaskSet release scheduled", timeout=WAIT)
    page.get_by_role("tab", name=re.compile("^All")).click()
    expect(page.locator("tr[data-name='release']")).to_be_visible(timeout=WAIT)
    page.screenshot(path=str(screenshots / "tasksets-1280.png"), full_page=True)
    page.get_by_role("link", name="release").click()
    steps = page.locator("ol.steps li")
    expect(steps).to_have_count(6)  # 3 tasks, 2 checks, the fallback
    for key in ("task:0", "check:0", "task:1", "check:1", "task:2"):
        expect(page.locator(f"li[data-step='{key}']")).to_have_attribute("data-status", "done", timeout=WAIT)
    expect(page.locator("li[data-step='fallback']")).to_have_attribute("data-status", "skipped")
    expect(page.locator("li[data-step='check:0']")).to_contain_text("2 calls")
    expect(page.locator("#attempts tr[data-step='check:0']")).to_have_count(2)
    expect(page.locator("h1 + [data-state]")).to_have_text("completed")
    page.screenshot(path=str(screenshots / "taskset-detail-1280.png"), full_page=True)


def test_another_user_sees_only_their_own_except_under_all(browser, app: Runtime, demo: DemoLambda) -> None:
    admin = open_page(browser, app)
    sign_in(admin, "admin", "admin-password")
    schedule(admin, demo.url + "/ok", 3600, "admins-task")
    bob = open_page(browser, app)  # another browser context: another session
    sign_in(bob, "bob", "bob-password")
    expect(bob.locator("#rows")).to_contain_text("No tasks in state scheduled", timeout=WAIT)
    bob.get_by_role("tab", name=re.compile("^All")).click()
    row = bob.locator("tr[data-name='admins-task']")
    expect(row).to_be_visible(timeout=WAIT)
    expect(row).to_contain_text("(admin)")
    expect(row.get_by_role("button")).to_have_count(0)  # not bob's to change
    expect(admin.locator("#who")).to_have_text("Signed in as admin")


def test_invalid_yaml_shows_the_line(browser, app: Runtime, demo: DemoLambda, screenshots: Path) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    page.get_by_role("link", name="Specs").click()
    editor = page.get_by_label("Spec YAML")
    editor.fill(f"kind: Task\nmetadata: {{name: from-page}}\nspec:\n  invoke: {demo.url}/ok\n  retries: -3\n")
    page.get_by_role("button", name="Validate").click()
    error = page.locator(".spec-errors li")
    expect(error).to_contain_text("Line 5", timeout=WAIT)
    expect(error).to_contain_text("spec.retries")
    editor.fill("kind: Task\nmetadata: {name: broken\nspec: {}\n")
    page.get_by_role("button", name="Validate").click()
    expect(page.locator(".spec-errors li")).to_contain_text("Line 3", timeout=WAIT)
    expect(page.locator(".spec-errors li")).to_contain_text("YAML syntax error")
    page.screenshot(path=str(screenshots / "specs-1280.png"), full_page=True)
    editor.fill(f"kind: Task\nmetadata: {{name: from-page}}\nspec:\n  invoke: {demo.url}/ok\n  after: 1h\n")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#spec-result")).to_contain_text("from-page: created", timeout=WAIT)


@pytest.mark.parametrize("view", ["tasks", "tasksets", "specs"])
def test_narrow_screens(browser, app: Runtime, demo: DemoLambda, screenshots: Path, view: str) -> None:
    page = open_page(browser, app, width=375)
    sign_in(page, "admin", "admin-password")
    if view == "tasks":
        schedule(page, demo.url + "/ok", 3600, "narrow")
    page.goto(f"{app.url}/#/{view}")
    page.wait_for_load_state("networkidle")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the {view} view scrolls sideways at 375 px ({width} px wide)"
    page.screenshot(path=str(screenshots / f"{view}-375.png"), full_page=True)
    # keyboard: the menu opens and its links are reachable without a mouse
    page.get_by_role("button", name="Toggle navigation").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("link", name="Specs")).to_be_visible(timeout=WAIT)
