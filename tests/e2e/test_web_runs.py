"""Runs you can act on (issue 22), on the page, in real headless Chromium against the real app,
store and demo endpoint: what failed is found first (the dashboard's attention panel, the Runs
view, the failed tab), a click opens its object, and the object's page runs it now or again."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from e2e.browsing import WAIT, ZONE, go, open_page, opened_dialog, sign_in
from helpers import quiet_minute, wait_until
from lambdaop.core.clock import iso
from lambdaop.runtime.runtime import Runtime
from lambdaop.spec import load_one
from lambdaop.tools.demo import DemoLambda


def apply(runtime: Runtime, text: str) -> str:
    (obj,) = load_one(text)
    return runtime.applier.apply(obj, "admin").id or ""


def api(runtime: Runtime) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {runtime.admin_token}"
    return s


def state_of(runtime: Runtime, path: str, oid: str) -> str:
    return api(runtime).get(f"{runtime.url}/{path}/{oid}", timeout=10).json()["state"]


def ended(runtime: Runtime, path: str, oid: str, state: str = "failed") -> None:
    wait_until(lambda: state_of(runtime, path, oid) == state, timeout=20, what=f"{oid} {state}")


def wide_enough(page: Page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page scrolls sideways at {width} px ({scroll} px wide)"


def clean(page: Page) -> None:
    assert not page.errors, page.errors  # type: ignore[attr-defined]
    assert not page.foreign, page.foreign  # type: ignore[attr-defined]


def failing_pair(runtime: Runtime, demo: DemoLambda) -> tuple[str, str]:
    """A failed run of each kind (a Task whose call fails, a TaskSet whose second task fails),
    and a Task that completes."""
    task = apply(runtime, f"kind: Task\nmetadata: {{name: broken, labels: {{team: billing}}}}\nspec: {{invoke: '{demo.url}/fail'}}\n")  # fmt: skip
    tset = apply(runtime, f"kind: TaskSet\nmetadata: {{name: train, labels: {{team: web}}}}\nspec:\n  tasks: ['{demo.url}/ok?first', '{demo.url}/fail?second']\n")  # fmt: skip
    fine = apply(runtime, f"kind: Task\nmetadata: {{name: fine, labels: {{team: web}}}}\nspec: {{invoke: '{demo.url}/ok?fine'}}\n")  # fmt: skip
    s = api(runtime)
    for oid, path in ((task, "tasks"), (tset, "tasksets")):
        ended(runtime, path, oid)
        # listed within a second of failing (the page shows what GET /runs answers)
        wait_until(lambda oid=oid: any(r["object"]["id"] == oid for r in s.get(runtime.url + "/runs?state=failed", timeout=10).json()["runs"]), timeout=1, what=f"the failed run of {oid} listed")  # fmt: skip
    ended(runtime, "tasks", fine, "completed")
    return task, tset


@pytest.mark.parametrize("width", [1280, 375])
def test_a_failed_run_of_each_kind_shows_in_the_attention_panel_and_the_runs_view(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path, width: int
) -> None:
    task, tset = failing_pair(app, demo)
    page = open_page(browser, app, width=width)
    sign_in(page, "admin", "admin-password")
    # the dashboard says what failed before anything else, each a link to its object
    attention = page.locator("#attention-failed")
    expect(attention.locator(f"li[data-kind='Task'] a[href='#/task/{task}']")).to_have_text("broken", timeout=WAIT)  # fmt: skip
    expect(attention.locator(f"li[data-kind='TaskSet'] a[href='#/taskset/{tset}']")).to_have_text("train")
    expect(attention.locator("li[data-kind='TaskSet']")).to_contain_text("task 2 failed")
    count = attention.locator("[data-attention-count]")
    expect(count).to_have_text("2")
    expect(count).to_have_class(re.compile(r"\btext-bg-danger\b"))  # failed counts in red
    first = page.locator("main section, main div.mb-3").first
    expect(first).to_have_id("attention")  # the panel is the first thing under the title
    card = page.locator(".count-card[data-kind='Task'][data-state='failed']")
    expect(card.locator("[data-count]")).to_have_text("1", timeout=WAIT)
    expect(card.locator("[data-count]")).to_have_class(re.compile(r"\btext-danger\b"))
    wide_enough(page, width)
    page.screenshot(path=str(screenshots / f"dashboard-attention-{width}.png"), full_page=True)
    attention.get_by_role("link", name="train").click()
    expect(page.locator("h1")).to_have_text("train", timeout=WAIT)
    # the Runs view: failed first, newest first, each run a click from its object
    if width >= 768:
        page.get_by_role("link", name="Runs", exact=True).click()
    else:
        go(page, "runs")
    expect(page.locator("h1")).to_have_text("Runs", timeout=WAIT)
    expect(page.get_by_role("tab", name="failed")).to_have_attribute("aria-selected", "true")
    rows = page.locator("#run-rows tr[data-run]")
    expect(rows).to_have_count(2, timeout=WAIT)
    expect(rows.nth(0)).to_have_attribute("data-kind", "TaskSet")  # it ended last
    expect(rows.nth(0)).to_contain_text("task 2 failed")
    expect(page.locator("#run-rows tr[data-kind='Task']")).to_contain_text("broken")
    wide_enough(page, width)
    page.screenshot(path=str(screenshots / f"runs-failed-{width}.png"), full_page=True)
    # a label filter, as kubectl's -l; a wrong one is marked on its field
    page.get_by_label("Labels").fill("team=web")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1, timeout=WAIT)
    expect(rows.first).to_contain_text("train")
    page.get_by_role("tab", name="completed").click()
    expect(rows).to_have_count(1, timeout=WAIT)
    expect(rows.first).to_contain_text("fine")
    expect(page.get_by_label("Labels")).to_have_value("team=web")  # the tab keeps the filter
    page.get_by_label("Labels").fill("team in (web")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_label("Labels")).to_have_attribute("aria-invalid", "true", timeout=WAIT)
    page.get_by_role("link", name="Clear").click()
    page.get_by_role("tab", name="failed").click()
    expect(rows).to_have_count(2, timeout=WAIT)
    rows.locator("a", has_text="broken").click()
    expect(page.locator("h1")).to_have_text("broken", timeout=WAIT)
    expect(page).to_have_url(re.compile(f"#/task/{task}$"))
    clean(page)


def test_the_runs_view_pages_by_next(browser, app: Runtime, demo: DemoLambda) -> None:
    for i in range(22):
        apply(app, f"kind: Task\nmetadata: {{name: broken-{i:02d}}}\nspec: {{invoke: '{demo.url}/fail?n={i}'}}\n")  # fmt: skip
    s = api(app)
    wait_until(lambda: len(s.get(app.url + "/runs?state=failed&limit=100", timeout=10).json()["runs"]) == 22, timeout=30, what="22 failed runs")  # fmt: skip
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "runs")
    rows = page.locator("#run-rows tr[data-run]")
    expect(rows).to_have_count(20, timeout=WAIT)
    first_page = set(rows.evaluate_all("rs => rs.map(r => r.dataset.run)"))
    page.get_by_role("button", name="Older").click()
    expect(rows).to_have_count(2, timeout=WAIT)
    second_page = set(rows.evaluate_all("rs => rs.map(r => r.dataset.run)"))
    assert not first_page & second_page
    expect(page.get_by_role("button", name="Older")).to_be_disabled()
    page.get_by_role("button", name="Newer").click()
    expect(rows).to_have_count(20, timeout=WAIT)
    clean(page)


def test_the_runs_view_is_searched_by_the_start_of_an_objects_name(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    made = {}
    for name, path in (("web-a", "fail"), ("db-a", "fail"), ("web-b", "fail"), ("web-ok", "ok")):
        made[name] = apply(app, f"kind: Task\nmetadata: {{name: {name}}}\nspec: {{invoke: '{demo.url}/{path}?{name}'}}\n")  # fmt: skip
        ended(app, "tasks", made[name], "completed" if path == "ok" else "failed")
    s = api(app)
    wait_until(lambda: len(s.get(app.url + "/runs", timeout=10).json()["runs"]) == 4, timeout=20, what="4 runs listed")  # fmt: skip
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "runs")
    rows = page.locator("#run-rows tr[data-run]")
    expect(rows).to_have_count(3, timeout=WAIT)
    names = "rs => rs.map(r => r.querySelector('a[data-object]').textContent)"
    # typed in the search box and sent with Enter: only the runs of objects whose name starts with it
    search = page.get_by_label("Name starts with")
    search.click()
    page.keyboard.type("web-")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"prefix=web-"), timeout=WAIT)
    expect(rows).to_have_count(2, timeout=WAIT)
    assert rows.evaluate_all(names) == ["web-b", "web-a"], "newest first"
    expect(page.get_by_label("Name starts with")).to_have_value("web-")
    # a re-run of many goes by labels: the view says so rather than offer more than it lists
    expect(page.get_by_role("button", name="Re-run these…")).to_have_count(0)
    expect(page.locator("#rerun-by-labels")).to_be_visible()
    page.screenshot(path=str(screenshots / "runs-name-search-1280.png"), full_page=True)
    page.set_viewport_size({"width": 375, "height": 900})
    wide_enough(page, 375)
    page.screenshot(path=str(screenshots / "runs-name-search-375.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    # the tabs keep the search
    page.get_by_role("tab", name="Any result").click()
    expect(rows).to_have_count(3, timeout=WAIT)
    assert rows.evaluate_all(names) == ["web-ok", "web-b", "web-a"]
    expect(page.get_by_label("Name starts with")).to_have_value("web-")
    # a name nothing starts with says so
    page.get_by_label("Name starts with").fill("api-")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#run-rows")).to_contain_text("No run of an object whose name starts with “api-” ended in the last 24 hours.", timeout=WAIT)  # fmt: skip
    page.get_by_role("link", name="Clear").click()
    page.get_by_role("tab", name="failed").click()
    expect(rows).to_have_count(3, timeout=WAIT)
    expect(page.get_by_label("Name starts with")).to_have_value("")
    expect(page.get_by_role("button", name="Re-run these…")).to_be_visible()
    clean(page)


def test_run_now_and_re_run_on_an_objects_page_say_what_was_done(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    hourly = apply(app, f"kind: Task\nmetadata: {{name: hourly}}\nspec:\n  invoke: '{demo.url}/ok?hourly'\n  schedule: {{every: 1h}}\n")  # fmt: skip
    tset = apply(app, f"kind: TaskSet\nmetadata: {{name: train}}\nspec:\n  tasks: ['{demo.url}/flaky/first?fails=0', '{demo.url}/flaky/second?fails=1']\n")  # fmt: skip
    task = apply(app, f"kind: Task\nmetadata: {{name: broken}}\nspec: {{invoke: '{demo.url}/flaky/broken?fails=1'}}\n")  # fmt: skip
    demo.wait_for(1, "/ok", timeout=20)  # an `every` schedule's first run is when it is applied
    ended(app, "tasksets", tset)
    ended(app, "tasks", task)
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    # run now: a recurring object runs once more, its schedule unchanged
    page.evaluate("id => { location.hash = '#/task/' + id; }", hourly)
    expect(page.locator("h1")).to_have_text("hourly", timeout=WAIT)
    expect(page.locator("#next-runs time").first).to_be_visible(timeout=WAIT)
    before = page.locator("#next-runs time").first.get_attribute("datetime")
    page.get_by_role("button", name="Run hourly now").click()
    expect(page.locator("#alert")).to_contain_text("Task hourly runs once now; its schedule is unchanged", timeout=WAIT)  # fmt: skip
    demo.wait_for(2, "/ok", timeout=10)
    expect(page.locator("#runs tbody tr")).to_have_count(2, timeout=WAIT)
    assert page.locator("#next-runs time").first.get_attribute("datetime") == before
    # the failed TaskSet: re-run from its failed step, and the task that succeeded is not called again
    page.evaluate("id => { location.hash = '#/taskset/' + id; }", tset)
    expect(page.locator("h1")).to_have_text("train", timeout=WAIT)
    expect(page.get_by_role("button", name="Re-run of train from the start")).to_be_visible(timeout=WAIT)
    page.screenshot(path=str(screenshots / "taskset-failed-rerun-1280.png"), full_page=True)
    page.get_by_role("button", name="Re-run of train from the failed step").click()
    expect(page.locator("#alert")).to_contain_text("TaskSet train re-runs its failed run from its failed step (task:1)", timeout=WAIT)  # fmt: skip
    expect(page.locator("h1 + .badge")).to_have_text("completed", timeout=WAIT)
    assert len(demo.calls("/flaky/first")) == 1 and len(demo.calls("/flaky/second")) == 2
    expect(page.locator("#detail-trigger")).to_contain_text("re-run")
    expect(page.get_by_role("button", name=re.compile("^Re-run"))).to_have_count(0)  # nothing failed now
    # run now on a finished one-time object: its next generation; from the start, after a failure
    page.get_by_role("button", name="Run train now").click()
    expect(page.locator("#alert")).to_contain_text("generation 2", timeout=WAIT)
    demo.wait_for(2, "/flaky/first", timeout=10)
    # a failed Task runs again from the start
    page.evaluate("id => { location.hash = '#/task/' + id; }", task)
    expect(page.locator("h1")).to_have_text("broken", timeout=WAIT)
    page.get_by_role("button", name="Re-run of broken from the start").click()
    expect(page.locator("#alert")).to_contain_text("Task broken re-runs its failed run from the start", timeout=WAIT)  # fmt: skip
    expect(page.locator("h1 + .badge")).to_have_text("completed", timeout=WAIT)
    assert len(demo.calls("/flaky/broken")) == 2
    clean(page)


def test_lists_are_searched_by_name_and_label_and_failed_is_a_red_tab(
    browser, app: Runtime, demo: DemoLambda
) -> None:
    for name, team in (("billing-report", "billing"), ("billing-invoice", "billing"), ("web-deploy", "web")):
        apply(app, f"kind: Task\nmetadata: {{name: {name}, labels: {{team: {team}}}}}\nspec: {{invoke: '{demo.url}/ok', after: 1h}}\n")  # fmt: skip
    broken = apply(app, f"kind: Task\nmetadata: {{name: broken}}\nspec: {{invoke: '{demo.url}/fail'}}\n")
    ended(app, "tasks", broken)
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasks")
    rows = page.locator("#rows tr[data-id]")
    expect(rows).to_have_count(3, timeout=WAIT)
    failed_tab = page.get_by_role("tab", name=re.compile("^failed"))
    expect(failed_tab.locator("[data-count='failed']")).to_have_text("1", timeout=WAIT)
    expect(failed_tab.locator("[data-count='failed']")).to_have_class(re.compile(r"\btext-bg-danger\b"))
    # failed is among the first tabs, not after the finished ones
    tabs = page.get_by_role("tab").evaluate_all("ts => ts.map(t => t.dataset.tab)")
    assert tabs.index("failed") < tabs.index("completed"), tabs
    page.get_by_label("Name starts with").fill("billing")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(2, timeout=WAIT)
    expect(page).to_have_url(re.compile(r"prefix=billing"))
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.name)")) == [
        "billing-invoice",
        "billing-report",
    ]
    page.get_by_label("Name starts with").fill("")
    page.get_by_label("Labels").fill("team=web")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1, timeout=WAIT)
    expect(rows.first).to_have_attribute("data-name", "web-deploy")
    page.get_by_label("Labels").fill("team!=web")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(2, timeout=WAIT)
    failed_tab.click()  # the tab keeps the search: no failed object has team!=web but broken (no labels)
    expect(rows).to_have_count(1, timeout=WAIT)
    expect(rows.first).to_have_attribute("data-name", "broken")
    page.get_by_label("Labels").fill("team in (web")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_label("Labels")).to_have_attribute("aria-invalid", "true", timeout=WAIT)
    # the TaskSets list is searched the same way
    go(page, "tasksets")
    expect(page.get_by_label("Name starts with")).to_be_visible()
    expect(page.get_by_label("Labels")).to_be_visible()
    clean(page)


def test_a_paused_object_says_why_and_the_pause_of_everything_leads_the_dashboard(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    s = api(app)
    pulse = apply(app, f"kind: Task\nmetadata: {{name: pulse}}\nspec:\n  invoke: '{demo.url}/ok?pulse'\n  schedule: {{every: 1h}}\n")  # fmt: skip
    demo.wait_for(1, "/ok", timeout=20)
    wait_until(lambda: state_of(app, "tasks", pulse) == "scheduled", timeout=20)
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasks")
    # paused from its row, saying why; the row and the object's page say it
    row = page.locator(f"tr[data-id='{pulse}']")
    row.get_by_role("button", name="Suspend pulse").click()
    expect(row.get_by_label("Why pause it (optional)")).to_be_focused(timeout=WAIT)
    page.keyboard.type("incident 42")
    page.keyboard.press("Enter")
    expect(page.locator("#alert")).to_contain_text("no run starts until it is resumed (incident 42)", timeout=WAIT)  # fmt: skip
    expect(row.locator(".pause-reason")).to_have_text("paused: incident 42", timeout=WAIT)
    assert s.get(f"{app.url}/tasks/{pulse}", timeout=10).json()["pauseReason"] == "incident 42"
    page.get_by_role("link", name="pulse").click()
    expect(page.locator("#pause-reason")).to_contain_text("Paused: incident 42", timeout=WAIT)
    # the dashboard lists it among what needs attention, with its reason, a click from it
    go(page, "dashboard")
    suspended = page.locator(f"#attention-paused li[data-paused='{pulse}']")
    expect(suspended.locator("a")).to_have_text("pulse", timeout=WAIT)
    expect(suspended).to_contain_text("incident 42")
    listed = s.get(f"{app.url}/dashboard", timeout=10).json()["attention"]["paused"]
    assert {"id": pulse, "kind": "Task", "name": "pulse", "reason": "incident 42"} in listed
    # an admin pauses everything from the dashboard, saying why
    page.get_by_role("button", name="Pause everything…").click()
    dialog = opened_dialog(page)
    dialog.get_by_label("Why (shown on the dashboard and on every object)").fill("store migration")
    dialog.get_by_role("button", name="Pause everything").click()
    expect(page.locator("#alert")).to_contain_text("Everything is paused.", timeout=WAIT)
    assert s.get(f"{app.url}/pause", timeout=10).json()["pausedAll"]["reason"] == "store migration"
    # a one-time Task due 5 minutes ago is not called, and is late
    past = iso(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    late = apply(app, f"kind: Task\nmetadata: {{name: overdue}}\nspec: {{invoke: '{demo.url}/ok?overdue', at: '{past}'}}\n")  # fmt: skip
    banner = page.locator("#paused-all-banner")
    expect(banner).to_contain_text("Everything is paused", timeout=WAIT)
    expect(banner).to_contain_text("by admin")
    expect(banner).to_contain_text("store migration")
    link = page.locator(f"#attention-late li[data-late='{late}'] a")
    expect(link).to_have_text("overdue", timeout=WAIT)
    page.screenshot(path=str(screenshots / "dashboard-paused-all-1280.png"), full_page=True)
    link.click()
    expect(page.locator("h1")).to_have_text("overdue", timeout=WAIT)
    expect(page.locator("#detail-paused-all")).to_contain_text("store migration", timeout=WAIT)
    assert not [c for c in demo.calls("/ok") if "overdue" in c.query], (
        "nothing starts while everything is paused"
    )
    # another user sees the banner, and may not resume
    bob = open_page(browser, app)
    sign_in(bob, "bob", "bob-password")
    expect(bob.locator("#paused-all-banner")).to_contain_text("store migration", timeout=WAIT)
    expect(bob.get_by_role("button", name="Resume everything")).to_have_count(0)
    expect(bob.get_by_role("button", name="Pause everything…")).to_have_count(0)
    go(page, "dashboard")
    page.get_by_role("button", name="Resume everything").click()
    expect(page.locator("#alert")).to_contain_text("Everything is resumed", timeout=WAIT)
    wait_until(
        lambda: [c for c in demo.calls("/ok") if "overdue" in c.query], timeout=20, what="the late call made"
    )
    expect(page.locator("#attention-late")).to_contain_text("Nothing is late", timeout=WAIT)
    expect(page.locator("#paused-all-banner")).to_have_count(0)
    clean(page)


def test_a_backfill_on_a_recurring_objects_page_runs_the_missed_hours_once_each(
    browser, app: Runtime, demo: DemoLambda
) -> None:
    hourly = apply(app, f"kind: Task\nmetadata: {{name: hourly}}\nspec:\n  invoke: '{demo.url}/ok?hourly'\n  schedule: {{cron: '{quiet_minute()} * * * *'}}\n")  # fmt: skip
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    page.evaluate("id => { location.hash = '#/task/' + id; }", hourly)
    expect(page.locator("h1")).to_have_text("hourly", timeout=WAIT)
    page.get_by_text("Backfill missed runs").click()
    # three hours that ended before the last full hour, in the browser's zone (the form's)
    hour = dt.datetime.now(zoneinfo.ZoneInfo(ZONE)).replace(minute=0, second=0, microsecond=0)
    start, end = hour - dt.timedelta(hours=4), hour - dt.timedelta(hours=1)
    page.get_by_label("From").fill(start.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_label("Until (not included)").fill(end.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("button", name="Backfill", exact=True).click()
    expect(page.locator("#alert")).to_contain_text("Task hourly backfills 3 run(s)", timeout=WAIT)
    calls = demo.wait_for(3, "/ok", timeout=20)
    assert len({c.idempotency_key for c in calls}) == 3
    expect(page.locator("#runs [data-trigger='backfill']")).to_have_count(3, timeout=WAIT)
    # a time range the wrong way round is said on its field, and nothing is sent
    page.get_by_text("Backfill missed runs").click()
    page.get_by_label("From").fill(end.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_label("Until (not included)").fill(start.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("button", name="Backfill", exact=True).click()
    expect(page.get_by_label("Until (not included)")).to_have_attribute("aria-invalid", "true", timeout=WAIT)
    expect(page.locator("#alert")).to_contain_text("Not saved")
    expect(page.locator("#backfill-end-error")).to_have_text("Until must be later than From.")
    # at most two at once: two copies of it run three earlier hours; a bad number is said on its field
    page.get_by_label("From").fill((start - dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_label("Until (not included)").fill(start.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_label("At once").fill("0")
    page.get_by_role("button", name="Backfill", exact=True).click()
    expect(page.locator("#backfill-parallelism-error")).to_have_text("Say how many runs at once: a whole number from 1 to 50.", timeout=WAIT)  # fmt: skip
    page.get_by_label("At once").fill("2")
    page.get_by_role("button", name="Backfill", exact=True).click()
    expect(page.locator("#alert")).to_contain_text("backfills 3 run(s)", timeout=WAIT)
    expect(page.locator("#alert")).to_contain_text("at most 2 at once")
    assert len({c.idempotency_key for c in demo.wait_for(6, "/ok", timeout=20)}) == 6
    clean(page)


def test_failed_runs_are_rerun_in_bulk_from_the_runs_view_after_seeing_which(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    first = apply(app, f"kind: Task\nmetadata: {{name: invoice, labels: {{team: billing}}}}\nspec: {{invoke: '{demo.url}/flaky/invoice?fails=1'}}\n")  # fmt: skip
    second = apply(app, f"kind: TaskSet\nmetadata: {{name: ledger, labels: {{team: billing}}}}\nspec:\n  tasks: ['{demo.url}/ok?ledger', '{demo.url}/flaky/ledger?fails=1']\n")  # fmt: skip
    other = apply(app, f"kind: Task\nmetadata: {{name: deploy, labels: {{team: web}}}}\nspec: {{invoke: '{demo.url}/fail?deploy'}}\n")  # fmt: skip
    ended(app, "tasks", first)
    ended(app, "tasksets", second)
    ended(app, "tasks", other)
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    page.evaluate("() => { location.hash = '#/runs?state=failed&since=24h&labelSelector=team%3Dbilling'; }")
    expect(page.locator("#run-rows tr[data-run]")).to_have_count(2, timeout=WAIT)
    # first it says which runs it would take up; "Not now" changes nothing
    page.get_by_role("button", name="Re-run these…").click()
    dialog = opened_dialog(page)
    expect(dialog).to_contain_text("Re-run 2 failed runs?", timeout=WAIT)
    expect(dialog.locator("#rerun-plan li")).to_have_count(2)
    expect(dialog).to_contain_text("invoice")
    expect(dialog).to_contain_text("ledger")
    expect(dialog).not_to_contain_text("deploy")
    page.screenshot(path=str(screenshots / "runs-rerun-these-1280.png"), full_page=True)
    dialog.get_by_role("button", name="Not now").click()
    expect(dialog).to_be_hidden(timeout=WAIT)
    assert len(demo.calls("/flaky/invoice")) == 1
    page.get_by_role("button", name="Re-run these…").click()
    expect(opened_dialog(page)).to_contain_text("Re-run 2 failed runs?", timeout=WAIT)
    dialog.get_by_role("button", name="Re-run all 2").click()
    expect(page.locator("#alert")).to_contain_text("Re-running 2", timeout=WAIT)
    ended(app, "tasks", first, "completed")
    ended(app, "tasksets", second, "completed")
    assert len(demo.calls("/ok")) == 1, "the TaskSet's task that succeeded is not called again"
    assert len(demo.calls("/fail")) == 1, "another team's run is left alone"
    page.get_by_role("tab", name="completed").click()
    expect(page.locator("#run-rows tr[data-run] [data-trigger='rerun']")).to_have_count(2, timeout=WAIT)
    clean(page)


def test_a_teams_objects_are_paused_with_a_reason_and_resumed_by_label_from_the_list(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    s = api(app)
    hourly = apply(app, f"kind: Task\nmetadata: {{name: bill-hourly, labels: {{team: billing}}}}\nspec:\n  invoke: '{demo.url}/ok?bill'\n  schedule: {{every: 1h}}\n")  # fmt: skip
    once = apply(app, f"kind: Task\nmetadata: {{name: bill-once, labels: {{team: billing}}}}\nspec: {{invoke: '{demo.url}/ok?once', after: 1h}}\n")  # fmt: skip
    web = apply(app, f"kind: Task\nmetadata: {{name: web-once, labels: {{team: web}}}}\nspec: {{invoke: '{demo.url}/ok?web', after: 1h}}\n")  # fmt: skip
    demo.wait_for(1, "/ok", timeout=20)
    wait_until(lambda: state_of(app, "tasks", hourly) == "scheduled", timeout=20)
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    page.evaluate("() => { location.hash = '#/tasks?state=scheduled&labelSelector=team%3Dbilling'; }")
    rows = page.locator("#rows tr[data-id]")
    expect(rows).to_have_count(2, timeout=WAIT)
    page.get_by_role("button", name="Pause these…").click()
    dialog = opened_dialog(page)
    expect(dialog).to_contain_text("Pause 2 Tasks with labels team=billing?", timeout=WAIT)
    expect(dialog.locator("#bulk-plan li")).to_have_count(2)
    expect(dialog).not_to_contain_text("web-once")
    dialog.get_by_label("Why (shown on each object, optional)").fill("incident 42")
    page.screenshot(path=str(screenshots / "tasks-pause-these-1280.png"), full_page=True)
    dialog.get_by_role("button", name="Pause all 2").click()
    expect(page.locator("#alert")).to_contain_text("Paused 2", timeout=WAIT)
    expect(page.locator(".pause-reason")).to_have_count(2, timeout=WAIT)
    for oid in (hourly, once):
        expect(page.locator(f"tr[data-id='{oid}'] .pause-reason")).to_have_text("paused: incident 42")
        assert s.get(f"{app.url}/tasks/{oid}", timeout=10).json()["pauseReason"] == "incident 42"
    assert not s.get(f"{app.url}/tasks/{web}", timeout=10).json()["suspended"]  # another team's runs on
    page.get_by_role("button", name="Resume these…").click()
    expect(opened_dialog(page)).to_contain_text("Resume 2 Tasks with labels team=billing?", timeout=WAIT)
    dialog.get_by_role("button", name="Resume all 2").click()
    expect(page.locator("#alert")).to_contain_text("Resumed 2", timeout=WAIT)
    expect(page.locator(".pause-reason")).to_have_count(0, timeout=WAIT)
    # a one-time object is paused and resumed from its row too, and keeps its time
    page.get_by_role("link", name="Clear").click()
    row = page.locator(f"tr[data-id='{web}']")
    row.get_by_role("button", name="Suspend web-once").click()
    row.get_by_role("button", name="Suspend", exact=True).click()
    expect(row.locator(".badges")).to_contain_text("suspended", timeout=WAIT)
    row.get_by_role("button", name="Resume web-once").click()
    expect(page.locator("#alert")).to_contain_text("Task web-once resumed: it runs at", timeout=WAIT)
    expect(row.locator(".badges")).to_have_count(0, timeout=WAIT)
    assert state_of(app, "tasks", web) == "scheduled"
    assert not [c for c in demo.calls("/ok") if "web" in c.query]
    clean(page)
