"""Steps of the web page tests, as a person takes them: open the page, sign in, open a view or a form."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from playwright.sync_api import Locator, Page, expect

from lambdaop.runtime.runtime import Runtime

WAIT = 20_000  # ms: generous bounds on events, never fixed sleeps
TITLES = {"tasks": "Tasks", "tasksets": "TaskSets", "runs": "Runs", "specs": "Specs", "dashboard": "Dashboard"}  # fmt: skip  # each view: its title
ZONE = "Europe/Berlin"  # the browser's zone; its offset changes with summer time, so it is looked up


def open_page(
    browser: Any, runtime: Runtime, width: int = 1280, *, touch: bool = False, timers: bool = False
) -> Page:
    """A fresh session at `width` px. `touch`: a phone's screen, tapped rather than pointed at.
    `timers`: the page's timers run on a clock the test moves (`page.clock.fast_forward`)."""
    context = browser.new_context(viewport={"width": width, "height": 900}, timezone_id=ZONE, has_touch=touch)
    page = context.new_page()
    if timers:
        page.clock.install()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    # everything the page loads comes from lambdaop itself (its assets are vendored, no CDN)
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((runtime.url, "data:")) else foreign.append(r.url))
    page.foreign = foreign  # type: ignore[attr-defined]
    page.goto(runtime.url + "/")
    return page


def sign_in(page: Page, name: str, password: str) -> None:
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text(f"Signed in as {name}", timeout=WAIT)
    expect(page.locator("h1")).to_have_text("Dashboard", timeout=WAIT)  # where signing in lands


def go(page: Page, view: str) -> None:
    """Open a view by its address, as a bookmark would (the menu is collapsed on narrow screens)."""
    page.evaluate("view => { location.hash = '#/' + view; }", view)
    expect(page.locator("h1").first).to_have_text(TITLES[view], timeout=WAIT)


def open_form(page: Page, kind: str) -> None:
    """Open the create form and wait until it has finished opening: a click while it grows
    lands wherever its button is about to be."""
    page.get_by_role("button", name=f"New {kind}").click()
    expect(page.locator("#create.collapse.show")).to_be_visible(timeout=WAIT)


def opened_dialog(page: Page) -> Locator:
    """The confirming dialog once it has finished opening, which the page says by focusing its safe
    answer. Bootstrap ignores a close asked for while the dialog still fades in, so an answer given
    sooner (a test is quicker than a person, the more so on a busy machine) would be lost."""
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible(timeout=WAIT)
    expect(page.locator("#confirm-no")).to_be_focused(timeout=WAIT)
    return dialog


def confirm(page: Page, yes: str = "Cancel it") -> None:
    """Answer the dialog a cancel opens."""
    dialog = opened_dialog(page)
    dialog.get_by_role("button", name=yes).click()
    expect(dialog).to_be_hidden(timeout=WAIT)


def tasks(page: Page, urls: list[str]) -> None:
    """The TaskSet form's task rows, one URL each."""
    for i, url in enumerate(urls):
        if i:
            page.get_by_role("button", name="Add a task").click()
        page.get_by_label(f"Task {i + 1}: URL or Lambda function ARN").fill(url)


def local_input(seconds: float) -> str:
    """A datetime-local value `seconds` from now, as the page's clock on the wall shows it."""
    at = dt.datetime.now(zoneinfo.ZoneInfo(ZONE)) + dt.timedelta(seconds=seconds)
    return at.strftime("%Y-%m-%dT%H:%M:%S")


def schedule(page: Page, url: str, seconds: float, name: str) -> None:
    if page.locator("#task-form").count() == 0:
        go(page, "tasks")
    if not page.locator("#task-form").is_visible():
        open_form(page, "Task")
    page.get_by_label("URL").fill(url)
    page.get_by_label("Date and time").fill(local_input(seconds))
    page.get_by_label("Name (optional)").fill(name)
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.locator("#alert")).to_contain_text(f"Task {name} scheduled", timeout=WAIT)
