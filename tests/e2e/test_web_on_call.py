"""What a new user tripped over on the page (issue 24), in real headless Chromium against the
real app, store and demo endpoint: forms that say what they expect, lists whose numbers add up,
a page that says once that the server is down and stops asking for what does not exist."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path

from playwright.sync_api import Page, expect

from e2e.browsing import (
    WAIT,
    ZONE,
    confirm,
    go,
    local_input,
    open_form,
    open_page,
    opened_dialog,
    schedule,
    sign_in,
    tasks,
)
from lambdaop.runtime.runtime import Runtime
from lambdaop.tools.demo import DemoLambda


def recurring(page: Page, url: str, every: str, name: str) -> None:
    """Schedule a Task at a fixed rate from the form."""
    if page.locator("#task-form").count() == 0:
        go(page, "tasks")
    if not page.locator("#task-form").is_visible():
        open_form(page, "Task")
    page.get_by_label("URL").fill(url)
    page.get_by_label("At a fixed rate").check()
    page.get_by_label("Every").fill(every)
    page.get_by_label("Name (optional)").fill(name)
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.locator("#alert")).to_contain_text(f"Task {name} created", timeout=WAIT)


def seconds_ahead(local: str) -> float:
    """How far ahead of now a datetime-local value is, read in the browser's zone."""
    return (
        dt.datetime.fromisoformat(local).replace(tzinfo=zoneinfo.ZoneInfo(ZONE)) - dt.datetime.now(dt.UTC)
    ).total_seconds()


def instant(value: str | None) -> dt.datetime:
    assert value, "no time shown"
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---------------------------------------------------------------- forms


def test_an_empty_form_marks_each_field_and_says_what_it_expects(browser, app: Runtime) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasks")
    open_form(page, "Task")
    # the picker says its time zone, and offers now and in 5 minutes
    expect(page.locator("#task-at-help")).to_contain_text(re.compile(r"Europe/Berlin \(UTC\+0[12]:00\)"))
    page.get_by_role("button", name="Schedule", exact=True).click()
    url = page.get_by_label("URL or Lambda function ARN")
    at = page.get_by_label("Date and time")
    expect(url).to_have_attribute("aria-invalid", "true", timeout=WAIT)
    expect(page.locator("#task-url-error")).to_have_text(
        "A URL is needed: https://… or a Lambda function ARN (arn:aws:lambda:…)."
    )
    expect(at).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#task-at-error")).to_contain_text("A time is needed")
    expect(url).to_be_focused()  # the first field of the form first, not the time
    expect(page.locator("#alert")).to_contain_text("see the 2 marked fields")
    expect(page.locator("#alert")).not_to_contain_text("line 1")
    # mistakes in words, beside the field
    url.fill("http://example.invalid/ok")
    page.get_by_label("Retries").fill("-1")
    page.get_by_label("Retry delay").fill("soon")
    page.get_by_role("button", name="In 5 min").click()
    ahead = seconds_ahead(at.input_value())
    assert 240 <= ahead <= 300, f"'In 5 min' chose a time {ahead:.0f} s ahead"
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.locator("#task-retries-error")).to_have_text(
        "Retries: a whole number, 0 or more.", timeout=WAIT
    )
    expect(page.locator("#task-retry-delay-error")).to_contain_text("write a duration with a unit, e.g. 30s")
    expect(at).not_to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Now", exact=True).click()
    assert abs(seconds_ahead(at.input_value())) < 60, "'Now' chose another time than now"
    # what only the server knows is put on the field it names, in its words
    page.get_by_label("Retries").fill("0")
    page.get_by_label("Retry delay").fill("10s")
    page.get_by_label("At a fixed rate").check()
    page.get_by_label("Every").fill("0s")
    page.get_by_role("button", name="Schedule", exact=True).click()
    every = page.get_by_label("Every")
    expect(every).to_have_attribute("aria-invalid", "true", timeout=WAIT)
    expect(page.locator("#task-every-error")).to_contain_text("1s")
    expect(page.locator("#task-every-error")).not_to_contain_text("Input should")
    # the TaskSet form: its first task is what is missing first
    go(page, "tasksets")
    open_form(page, "TaskSet")
    page.get_by_role("button", name="Orchestrate").click()
    first = page.get_by_label("Task 1: URL or Lambda function ARN")
    expect(first).to_have_attribute("aria-invalid", "true", timeout=WAIT)
    expect(page.locator("#ts-task-0-error")).to_have_text(
        "At least one task is needed: a URL or a Lambda function ARN."
    )
    expect(first).to_be_focused()
    assert not page.errors  # type: ignore[attr-defined]


def test_after_a_recurring_create_the_form_is_back_to_once_with_its_field(
    browser, app: Runtime, demo: DemoLambda
) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    recurring(page, demo.url + "/ok?hourly", "1h", "hourly")
    expect(page.get_by_label("Once, at a time")).to_be_checked()
    expect(page.get_by_label("Every")).to_be_hidden()
    expect(page.get_by_label("Date and time")).to_be_visible()
    expect(page.get_by_label("Date and time")).to_have_value("")


def test_the_taskset_form_says_when_the_fallback_runs_and_a_failed_task_calls_it_when_asked(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasksets")
    open_form(page, "TaskSet")
    form = page.locator("#taskset-form")
    expect(form).to_contain_text("The fallback runs when")
    expect(page.get_by_label("the check gives up (its retries are used up)")).to_be_checked()
    page.screenshot(path=str(screenshots / "taskset-form-1280.png"), full_page=True)
    # a fallback only for a check that gives up: a failing task ends the set without it
    tasks(page, [demo.url + "/fail?only-check"])
    page.get_by_label("Fallback URL (optional)").fill(demo.url + "/ok?fallback-not-called")
    page.get_by_label("a task fails (its retries are used up)").uncheck()
    page.get_by_label("Name (optional)").fill("check-only")
    page.get_by_role("button", name="Orchestrate").click()
    expect(page.locator("#alert")).to_contain_text("TaskSet check-only scheduled", timeout=WAIT)
    # a fallback also for a failing task, which is tried twice
    tasks(page, [demo.url + "/fail?retried"])
    page.get_by_label("Task 1: retries").fill("1")
    page.get_by_label("Fallback URL (optional)").fill(demo.url + "/ok?fallback-called")
    page.get_by_label("Name (optional)").fill("any-failure")
    page.get_by_role("button", name="Orchestrate").click()
    expect(page.locator("#alert")).to_contain_text("TaskSet any-failure scheduled", timeout=WAIT)
    demo.wait_for(1, "/ok", timeout=20)

    page.get_by_role("tab", name=re.compile("^failed")).click()
    page.get_by_role("link", name="any-failure").click()
    expect(page.locator("li[data-step='fallback']")).to_have_attribute("data-status", "done", timeout=WAIT)
    expect(page.locator("li[data-step='task:0']")).to_contain_text("2 attempts")
    expect(page.locator("li[data-step='task:0']")).to_contain_text("retries 1")
    expect(page.locator("li[data-step='fallback'] .step-note")).to_have_text(
        "runs when the check gives up or a task fails"
    )
    page.go_back()
    page.get_by_role("link", name="check-only").click()
    expect(page.locator("h1 + [data-state]")).to_have_text("failed", timeout=WAIT)
    expect(page.locator("li[data-step='fallback']")).to_have_attribute("data-status", "skipped")
    expect(page.locator("li[data-step='fallback'] .step-note")).to_have_text(
        "not run: a task fails, and it runs only when the check gives up"
    )
    page.screenshot(path=str(screenshots / "taskset-fallback-skipped-1280.png"), full_page=True)
    assert [c.query for c in demo.calls("/ok")] == ["fallback-called"]


def test_the_taskset_form_takes_a_check_that_succeeds_on_a_json_field(
    browser, app: Runtime, demo: DemoLambda
) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasksets")
    open_form(page, "TaskSet")
    tasks(page, [demo.url + "/ok?first", demo.url + "/ok?second"])
    page.get_by_label("Task 2: method").select_option("POST")
    # /check answers 200 {"status": "failed"} the first time: only the JSON field tells it failed
    page.get_by_label("Condition check URL (optional)").fill(demo.url + "/check?fails=1")
    page.get_by_label("Check retries").fill("3")
    page.get_by_label("Delay between checks").fill("200ms")
    page.locator("details[data-success='check'] summary").click()
    page.get_by_label("and the JSON field").fill("status")
    page.get_by_label("equals").fill("success")
    page.get_by_label("Name (optional)").fill("judged")
    page.get_by_role("button", name="Orchestrate").click()
    expect(page.locator("#alert")).to_contain_text("TaskSet judged scheduled", timeout=WAIT)
    demo.wait_for(2, "/ok", timeout=20)
    page.get_by_role("tab", name=re.compile("^All mine")).click()
    page.get_by_role("link", name="judged").click()
    expect(page.locator("h1 + [data-state]")).to_have_text("completed", timeout=WAIT)
    expect(page.locator("li[data-step='check:0']")).to_contain_text("2 attempts")
    # each step says what it calls: the method and path of a URL
    expect(page.locator("li[data-step='task:0'] .step-call")).to_have_text("GET /ok?first")
    expect(page.locator("li[data-step='task:1'] .step-call")).to_have_text("POST /ok?second")
    expect(page.locator("li[data-step='check:0'] .step-call")).to_have_text("GET /check?fails=1")
    assert [c.method for c in demo.calls("/ok")] == ["GET", "POST"]


def test_the_task_form_takes_what_success_is(browser, app: Runtime, demo: DemoLambda) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasks")
    open_form(page, "Task")
    page.get_by_label("URL").fill(demo.url + "/check?fails=5")  # 200 {"status": "failed"}, five times
    page.locator("details[data-success='task'] summary").click()
    page.get_by_label("and the JSON field").fill("status")
    page.get_by_label("equals").fill("success")
    page.get_by_role("button", name="Now", exact=True).click()
    page.get_by_label("Name (optional)").fill("judged-task")
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.locator("#alert")).to_contain_text("Task judged-task scheduled", timeout=WAIT)
    page.get_by_role("tab", name=re.compile("^failed")).click()
    row = page.locator("tr[data-name='judged-task']")
    expect(row.locator("[data-state]")).to_have_text("failed", timeout=WAIT)
    assert len(demo.calls("/check")) == 1


def test_a_lambda_step_shows_its_function(browser, app: Runtime, demo: DemoLambda) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasksets")
    open_form(page, "TaskSet")
    tasks(page, [demo.url + "/ok?before", "arn:aws:lambda:eu-west-1:123456789012:function:deploy"])
    page.get_by_label("Date and time").fill(local_input(3600))  # nothing is called while the test runs
    page.get_by_label("Name (optional)").fill("to-lambda")
    page.get_by_role("button", name="Orchestrate").click()
    expect(page.locator("#alert")).to_contain_text("TaskSet to-lambda scheduled", timeout=WAIT)
    page.get_by_role("link", name="to-lambda").click()
    expect(page.locator("li[data-step='task:1'] .step-call")).to_have_text("λ deploy", timeout=WAIT)
    expect(page.locator("li[data-step='task:1'] .step-host")).to_have_text("λ deploy (eu-west-1)")
    expect(page.locator("li[data-step='task:1'] .step-call")).to_have_attribute(
        "title", "arn:aws:lambda:eu-west-1:123456789012:function:deploy"
    )


def test_the_task_form_knows_the_lambda_invoke_form(browser, app: Runtime) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasks")
    open_form(page, "Task")
    invocation, iam = page.get_by_label("Invocation type"), page.get_by_label("Sign with AWS IAM (SigV4)")
    expect(invocation).to_be_hidden()
    page.get_by_label("URL").fill("arn:aws:lambda:eu-west-1:123456789012:function:report")
    expect(invocation).to_be_visible()
    expect(iam).to_be_hidden()
    invocation.select_option("Event")
    page.get_by_label("Date and time").fill(local_input(3600))  # nothing is called while the test runs
    page.get_by_label("Name (optional)").fill("queued")
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.locator("#alert")).to_contain_text("Task queued", timeout=WAIT)
    expect(invocation).to_be_hidden()  # the form is reset: a URL again
    url = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws/report"
    page.get_by_label("URL").fill(url)
    iam.check()
    page.get_by_label("Date and time").fill(local_input(3600))
    page.get_by_label("Name (optional)").fill("signed")
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.locator("#alert")).to_contain_text("Task signed", timeout=WAIT)
    page_of = app.store.list_objects("Task", "admin", None, None, 50)
    rows = {o["name"].rsplit("-", 1)[0]: o["spec"]["invoke"] for o in page_of.docs}  # <name>-<id>
    assert set(rows) == {"queued", "signed"}, rows
    assert (
        rows["queued"]["lambda"].endswith(":function:report") and rows["queued"]["invocationType"] == "Event"
    )
    assert rows["signed"]["url"] == url and rows["signed"]["auth"] == "aws_iam"


# ---------------------------------------------------------------- lists and actions


def test_moving_the_next_run_of_a_recurring_task_moves_next_in_the_list(
    browser, app: Runtime, demo: DemoLambda
) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    recurring(page, demo.url + "/ok?hourly", "1h", "hourly")
    row = page.locator("tr[data-name='hourly']")
    expect(row.locator("td[data-label='Next'] time")).to_be_visible(timeout=WAIT)
    before = instant(row.locator("td[data-label='Next'] time").get_attribute("datetime"))
    row.get_by_role("button", name="Move the next run of hourly").click()
    chosen = local_input(1800)
    row.get_by_label("New time of the next run").fill(chosen)
    expect(row.locator(".modify-form")).to_contain_text("the runs after it keep their schedule")
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#alert")).to_contain_text("Next run saved", timeout=WAIT)
    wanted = dt.datetime.fromisoformat(chosen).replace(tzinfo=zoneinfo.ZoneInfo(ZONE))
    assert wanted != before
    page.wait_for_function(
        "([sel, want]) => { const t = document.querySelector(sel); return t && Date.parse(t.dateTime) === want; }",
        arg=["tr[data-name='hourly'] td[data-label='Next'] time", wanted.timestamp() * 1000],
        timeout=WAIT,
    )
    # the object's page says the same: its next call and the first of its next runs
    page.locator("tr[data-name='hourly']").get_by_role("link", name="hourly").click()
    first_run = page.locator("#next-runs li time").first
    expect(first_run).to_be_visible(timeout=WAIT)
    assert instant(first_run.get_attribute("datetime")) == wanted
    go(page, "tasks")  # and the list says it again once read afresh
    assert (
        instant(page.locator("tr[data-name='hourly'] td[data-label='Next'] time").get_attribute("datetime"))
        == wanted
    )


def test_cancel_asks_first_and_keep_it_keeps_it(browser, app: Runtime, demo: DemoLambda) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    schedule(page, demo.url + "/ok?kept", 3600, "kept")
    row = page.locator("tr[data-name='kept']")
    row.get_by_role("button", name="Cancel kept").click()
    dialog = opened_dialog(page)
    expect(dialog).to_contain_text("Cancel Task kept?")
    expect(dialog).to_contain_text("will not run")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden(timeout=WAIT)
    expect(page.locator("#alert")).not_to_contain_text("cancelled")
    expect(row.locator("[data-state]")).to_have_text("scheduled")
    assert app.service.get(row.get_attribute("data-id") or "", "admin").state == "scheduled"
    # Escape keeps it too; Cancel it cancels it
    row.get_by_role("button", name="Cancel kept").click()
    expect(dialog.get_by_role("button", name="Keep it")).to_be_focused(timeout=WAIT)  # the safe answer
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden(timeout=WAIT)
    expect(row.locator("[data-state]")).to_have_text("scheduled")
    row.get_by_role("button", name="Cancel kept").click()
    confirm(page)
    expect(page.locator("#alert")).to_contain_text("Task kept cancelled", timeout=WAIT)


def test_the_tab_counts_add_up_and_a_single_page_has_no_pager(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    bob = open_page(browser, app)
    sign_in(bob, "bob", "bob-password")
    schedule(bob, demo.url + "/ok?bobs", 3600, "bobs")
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    schedule(page, demo.url + "/ok?one", 3600, "one")
    recurring(page, demo.url + "/ok?every", "1h", "repeating")
    row = page.locator("tr[data-name='repeating']")
    expect(row).to_contain_text("recurring", timeout=WAIT)
    # the Suspend button is a button one can press, not a grey one that looks disabled
    suspend = row.get_by_role("button", name="Suspend repeating")
    expect(suspend).to_be_enabled()
    assert "btn-outline-secondary" not in (suspend.get_attribute("class") or "")
    page.screenshot(path=str(screenshots / "tasks-actions-1280.png"), full_page=True)
    row.get_by_role("button", name="Cancel repeating").click()
    confirm(page)
    expect(page.locator("#alert")).to_contain_text("Task repeating cancelled", timeout=WAIT)
    # "All mine" is the sum of the state tabs; everyone's counts the other users' too
    counts = {s: page.locator(f"[data-count='{s}']") for s in ("scheduled", "running", "completed", "failed", "cancelled", "mine", "all")}  # fmt: skip
    expect(counts["cancelled"]).to_have_text("1", timeout=WAIT)
    expect(counts["scheduled"]).to_have_text("1")
    expect(counts["mine"]).to_have_text("2")
    expect(counts["all"]).to_have_text("3")
    expect(page.get_by_role("tab", name=re.compile("^All mine"))).to_be_visible()
    expect(page.get_by_role("tab", name=re.compile("^Everyone's"))).to_be_visible()
    expect(page.locator("#pager")).to_be_hidden()  # one row, one page: no Newer or Older
    page.get_by_role("tab", name=re.compile("^cancelled")).click()
    cancelled = page.locator("tr[data-name='repeating']")
    expect(cancelled.locator("[data-state]")).to_have_text("cancelled", timeout=WAIT)
    expect(cancelled).not_to_contain_text("recurring")  # it recurs no more
    expect(page.get_by_role("button", name="Newer")).to_be_hidden()
    expect(page.get_by_role("button", name="Older")).to_be_hidden()


# ---------------------------------------------------------------- when things go wrong


def requests_to(page: Page, path: str) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if r.url.split("?")[0].endswith(path) else None)
    return seen


def settle(page: Page) -> None:
    """Let the requests that timers fired reach the browser's log: a request sent after them
    has its answer only once they were sent."""
    page.evaluate("() => fetch('/healthz').then((r) => r.text())")


def test_an_object_that_does_not_exist_is_said_once_and_not_asked_for_again(browser, app: Runtime) -> None:
    page = open_page(browser, app, timers=True)
    sign_in(page, "admin", "admin-password")
    asked = requests_to(page, "/tasks/no-such-id")
    page.evaluate("() => { location.hash = '#/task/no-such-id'; }")
    message = page.locator("#detail .load-error")
    expect(message).to_contain_text("Not found: no Task no-such-id is yours to see", timeout=WAIT)
    expect(message).not_to_contain_text("again")
    expect(page.get_by_role("link", name="See your Tasks")).to_be_visible()
    settle(page)
    assert len(asked) == 1
    page.clock.fast_forward("05:00")  # any retry would have been due many times over
    page.clock.fast_forward("05:00")
    settle(page)
    assert len(asked) == 1, f"the page asked {len(asked)} times for what does not exist"
    assert not page.errors  # type: ignore[attr-defined]


def test_a_server_that_went_away_is_said_once(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    page = open_page(browser, app, timers=True)
    sign_in(page, "admin", "admin-password")
    schedule(page, demo.url + "/ok?later", 3600, "later")
    app.stop()
    for _ in range(6):  # six refreshes fail, each tried a little later than the one before
        page.clock.fast_forward("00:40")
    banner = page.locator("#connection [data-offline]")
    expect(banner).to_contain_text("The server cannot be reached", timeout=WAIT)
    expect(banner).to_contain_text("check that lambdaop is running")
    expect(page.get_by_text("cannot be reached")).to_have_count(1)
    expect(page.locator("#alert")).not_to_contain_text("reached")
    page.screenshot(path=str(screenshots / "server-down-1280.png"), full_page=True)
    page.get_by_role("link", name="TaskSets", exact=True).click()  # a view opened meanwhile says it waits
    expect(page.locator("#rows")).to_contain_text("Waiting for the server", timeout=WAIT)
    page.clock.fast_forward("00:40")
    expect(page.get_by_text("cannot be reached")).to_have_count(1)


# ---------------------------------------------------------------- a phone


def test_on_a_phone_badges_fit_the_menu_closes_and_runs_are_labelled(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    page = open_page(browser, app, width=375)
    sign_in(page, "admin", "admin-password")
    recurring(page, demo.url + "/ok?beat", "1s", "nightly-billing-report-for-finance")
    demo.wait_for(2, "/ok", timeout=30)
    row = page.locator("tr[data-name='nightly-billing-report-for-finance']")
    row.get_by_role("button", name="Suspend nightly-billing-report-for-finance").click()
    row.get_by_role("button", name="Suspend", exact=True).click()  # no reason given
    expect(row.locator(".badges")).to_contain_text("suspended", timeout=WAIT)
    expect(row.locator(".badges")).to_contain_text("recurring")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the list scrolls sideways at 375 px ({width} px wide)"
    card = row.bounding_box()
    assert card
    for badge in row.locator(".badges .badge").all():
        box = badge.bounding_box()
        assert box and box["x"] >= card["x"] and box["x"] + box["width"] <= card["x"] + card["width"], (
            badge.text_content()
        )
    page.screenshot(path=str(screenshots / "tasks-badges-375.png"), full_page=True)
    # the Runs of a recurring object: each card names its values
    row.get_by_role("link", name="nightly-billing-report-for-finance").click()
    first = page.locator("#runs tbody tr").first
    expect(first).to_be_visible(timeout=WAIT)
    for label in ("Run", "Due", "Finished", "Result"):
        cell = first.locator(f"td[data-label='{label}']")
        assert label in cell.evaluate("td => getComputedStyle(td, '::before').content")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(screenshots / "recurring-detail-375.png"), full_page=True)
    # the menu closes once a link in it is chosen
    page.get_by_role("button", name="Toggle navigation").click()
    specs = page.get_by_role("link", name="Specs", exact=True)
    expect(specs).to_be_visible(timeout=WAIT)
    specs.click()
    expect(page.locator("h1")).to_have_text("Specs", timeout=WAIT)
    expect(specs).to_be_hidden(timeout=WAIT)
    expect(page.get_by_role("button", name="Toggle navigation")).to_have_attribute("aria-expanded", "false")


# ---------------------------------------------------------------- specs


def test_the_specs_view_numbers_lines_and_documents_sorts_errors_and_links_what_it_applied(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "specs")
    editor = page.get_by_label("Spec YAML")
    good = f"kind: Task\nmetadata: {{name: good}}\nspec:\n  invoke: {demo.url}/ok\n  after: 1h\n"
    bad = (
        f"kind: Task\nmetadata: {{name: bad}}\nspec:\n  invoke: {demo.url}/ok\n  after: soon\n  retries: -3\n"
    )
    editor.fill(good + "---\n" + bad)
    gutter = page.locator("#spec-gutter")
    expect(gutter).to_have_text("\n".join(str(n) for n in range(1, 14)))
    page.get_by_role("button", name="Validate").click()
    result = page.locator("#spec-result")
    expect(result).to_contain_text("Not valid: 2 problems to fix", timeout=WAIT)
    expect(result).not_to_contain_text("applied")
    errors = page.locator(".spec-errors li")
    expect(errors).to_have_count(2)
    # counted as the CLI counts them (from 1), in the order of the text
    expect(errors.nth(0)).to_contain_text("Document 2, line 11")
    expect(errors.nth(0)).to_contain_text("spec.after")
    expect(errors.nth(1)).to_contain_text("Document 2, line 12")
    expect(errors.nth(1)).to_contain_text("spec.retries")
    expect(gutter.locator(".bad")).to_have_text(["11", "12"])
    page.screenshot(path=str(screenshots / "specs-errors-1280.png"), full_page=True)
    errors.nth(1).get_by_role("link").click()  # the error's place, selected in the editor
    assert editor.evaluate("e => e.value.slice(e.selectionStart, e.selectionEnd)") == "  retries: -3"
    editor.fill(good)
    page.get_by_role("button", name="Validate").click()
    expect(result).to_contain_text("Valid: nothing was changed", timeout=WAIT)
    expect(result).to_contain_text("good: valid; would be created")
    expect(result).not_to_contain_text("Nothing was applied")
    expect(page.get_by_label("Take over objects the specs folder manages")).not_to_be_checked()
    page.get_by_role("button", name="Apply").click()
    expect(result).to_contain_text("good: created", timeout=WAIT)
    result.get_by_role("link", name="good").click()
    expect(page.locator("h1")).to_have_text("good", timeout=WAIT)
    expect(page.locator("h1 + [data-state]")).to_have_text("scheduled")


# ---------------------------------------------------------------- the dashboard and signing in


def test_the_dashboard_on_a_phone_names_its_marks_on_a_tap(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    page = open_page(browser, app, width=375, touch=True)
    sign_in(page, "admin", "admin-password")
    schedule(page, demo.url + "/ok?now", 1, "called")
    recurring(page, demo.url + "/ok?pulse", "5m", "pulse")
    demo.wait_for(1, "/ok", timeout=20)
    go(page, "dashboard")
    timeline = page.locator("#timeline")
    # one mark per call due, one line per object that makes them
    expect(timeline).to_have_attribute("data-objects", "1", timeout=WAIT)
    # (its first run starts when it is applied: while that call is out the view may show one mark)
    expect(timeline).to_have_attribute("data-points", re.compile(r"^1[123]$"), timeout=WAIT)
    points = int(timeline.get_attribute("data-points") or 0)
    assert 11 <= points <= 13, f"{points} marks for a Task due every 5 minutes in the next hour"
    upcoming = page.locator("#upcoming li")
    expect(upcoming).to_have_count(1)
    expect(upcoming).to_contain_text(f"pulse and {points - 1} more calls in the hour")
    expect(page.locator("#calls")).not_to_have_attribute("data-calls", "0", timeout=WAIT)
    legend = page.locator("#calls-legend")
    expect(legend).to_contain_text("ok")
    expect(legend).to_contain_text("failed")
    expect(legend).not_to_contain_text("--")
    expect(page.locator("main")).not_to_contain_text("this process")
    expect(page.locator("main")).not_to_contain_text("Hover")
    # a tap names what is under it, as pointing does with a mouse
    calls = page.locator("#calls .u-over")
    box = calls.bounding_box()
    assert box
    calls.tap(position={"x": box["width"] - 2, "y": box["height"] / 2})
    expect(page.locator("#calls-tip")).to_have_text(
        re.compile(r"^\d\d:\d\d( [AP]M)?: \d+ ok, \d+ failed$"), timeout=WAIT
    )
    over = page.locator("#timeline .u-over")
    box = over.bounding_box()
    assert box
    over.tap(position={"x": box["width"] / 2, "y": box["height"] / 2})
    expect(page.locator("#timeline-tip")).to_contain_text(re.compile(r"^Task pulse, due "), timeout=WAIT)
    page.screenshot(path=str(screenshots / "dashboard-tap-375.png"), full_page=True)
    assert not page.errors  # type: ignore[attr-defined]
    assert not page.foreign, f"fetched from elsewhere: {page.foreign}"  # type: ignore[attr-defined]


def test_signed_out_there_is_no_menu_and_the_page_says_where_a_token_comes_from(
    browser, app: Runtime, screenshots: Path
) -> None:
    for width in (1280, 375):
        page = open_page(browser, app, width=width)
        expect(page.locator("h1")).to_have_text("Sign in", timeout=WAIT)
        expect(page.get_by_role("link", name="Tasks", exact=True)).to_be_hidden()
        expect(page.get_by_role("button", name="Toggle navigation")).to_be_hidden()
        help_ = page.locator("#where-tokens")
        expect(help_).to_contain_text("Where a token comes from")
        expect(help_).to_contain_text(".lambdaop/admin.token")
        expect(help_).to_contain_text("lambdaop user token NAME")
        page.screenshot(path=str(screenshots / f"sign-in-{width}.png"), full_page=True)
    # what it says holds: the first start wrote the admin's token there
    token = (app.config.state_dir / "admin.token").read_text().strip()
    page.get_by_label("Or paste an API token").fill(token)
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#who")).to_have_text("Signed in as admin", timeout=WAIT)
    page.get_by_role("button", name="Toggle navigation").click()
    expect(page.get_by_role("link", name="Tasks", exact=True)).to_be_visible(timeout=WAIT)
    assert not page.foreign, f"fetched from elsewhere: {page.foreign}"  # type: ignore[attr-defined]
