"""The web page in real headless Chromium against the real app, store and demo endpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from e2e.browsing import WAIT, confirm, go, local_input, open_form, open_page, schedule, sign_in, tasks
from lambdaop.runtime.runtime import Runtime
from lambdaop.tools.demo import DemoLambda


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
    confirm(page)
    expect(page.locator("#alert")).to_contain_text("Task dropped cancelled", timeout=WAIT)
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
    page.get_by_role("link", name="TaskSets", exact=True).click()
    open_form(page, "TaskSet")
    tasks(page, [f"{demo.url}/ok?t{i}" for i in range(1, 4)])
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
    expect(page.locator("#flow-main > li")).to_have_count(5)  # 3 tasks, 2 checks between them
    expect(page.locator(".flow-hooks li[data-step='fallback']")).to_have_count(1)  # off the main line
    for key in ("task:0", "check:0", "task:1", "check:1", "task:2"):
        expect(page.locator(f"li[data-step='{key}']")).to_have_attribute("data-status", "done", timeout=WAIT)
    # each step says what it calls, so the steps can be told apart (they share one host)
    for i in range(3):
        expect(page.locator(f"li[data-step='task:{i}'] .step-call")).to_have_text(f"GET /ok?t{i + 1}")
    expect(page.locator("li[data-step='check:0'] .step-call")).to_have_text("GET /flaky/check?fails=1")
    expect(page.locator("li[data-step='fallback']")).to_have_attribute("data-status", "skipped")
    expect(page.locator("li[data-step='check:0']")).to_contain_text("2 attempts")
    expect(page.locator("#attempts tr[data-step='check:0']")).to_have_count(2)
    expect(page.locator("h1 + [data-state]")).to_have_text("completed")
    page.screenshot(path=str(screenshots / "taskset-detail-1280.png"), full_page=True)


def test_another_user_sees_only_their_own_except_under_all(browser, app: Runtime, demo: DemoLambda) -> None:
    admin = open_page(browser, app)
    sign_in(admin, "admin", "admin-password")
    schedule(admin, demo.url + "/ok", 3600, "admins-task")
    bob = open_page(browser, app)  # another browser context: another session
    sign_in(bob, "bob", "bob-password")
    go(bob, "tasks")
    expect(bob.locator("#rows")).to_contain_text("No tasks in state scheduled", timeout=WAIT)
    bob.get_by_role("tab", name=re.compile("^Everyone's")).click()
    row = bob.locator("tr[data-name='admins-task']")
    expect(row).to_be_visible(timeout=WAIT)
    expect(row).to_contain_text("(admin)")
    expect(row.get_by_role("button")).to_have_count(0)  # not bob's to change
    expect(row.get_by_role("link")).to_have_count(0)  # nor to open: its details are not bob's to see
    expect(admin.locator("#who")).to_have_text("Signed in as admin")


def test_invalid_yaml_shows_the_line(browser, app: Runtime, demo: DemoLambda, screenshots: Path) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    page.get_by_role("link", name="Specs", exact=True).click()
    editor = page.get_by_label("Spec YAML")
    editor.fill(f"kind: Task\nmetadata: {{name: from-page}}\nspec:\n  invoke: {demo.url}/ok\n  retries: -3\n")
    page.get_by_role("button", name="Validate").click()
    error = page.locator(".spec-errors li")
    expect(error).to_contain_text("line 5", timeout=WAIT)
    expect(error).to_contain_text("spec.retries")
    editor.fill("kind: Task\nmetadata: {name: broken\nspec: {}\n")
    page.get_by_role("button", name="Validate").click()
    expect(page.locator(".spec-errors li")).to_contain_text("line 3", timeout=WAIT)
    expect(page.locator(".spec-errors li")).to_contain_text("YAML syntax error")
    page.screenshot(path=str(screenshots / "specs-1280.png"), full_page=True)
    editor.fill(f"kind: Task\nmetadata: {{name: from-page}}\nspec:\n  invoke: {demo.url}/ok\n  after: 1h\n")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#spec-result")).to_contain_text("from-page: created", timeout=WAIT)


def test_the_specs_view_takes_over_a_folder_object_only_when_asked(
    browser, make_runtime, demo: DemoLambda, tmp_path: Path, screenshots: Path
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "owned.yaml").write_text(
        f"kind: Task\nmetadata: {{name: owned}}\nspec:\n  invoke: {demo.url}/ok\n  after: 1h\n"
    )
    runtime = make_runtime(specs_dir=specs)
    runtime.users.set_password("admin", "admin-password")
    page = open_page(browser, runtime)
    sign_in(page, "admin", "admin-password")
    go(page, "specs")
    page.get_by_label("Spec YAML").fill(
        f"kind: Task\nmetadata: {{name: owned}}\nspec:\n  invoke: {demo.url}/ok\n  after: 2h\n"
    )
    page.get_by_role("button", name="Validate").click()
    expect(page.locator("#spec-result")).to_contain_text("owned: valid; would be refused", timeout=WAIT)
    expect(page.locator("#spec-result")).to_contain_text("owned.yaml")
    page.get_by_role("button", name="Apply").click()
    refusal = page.locator(".spec-errors li")
    expect(refusal).to_contain_text("owned.yaml", timeout=WAIT)
    expect(refusal).to_contain_text("Take over objects the specs folder manages")
    expect(refusal).not_to_contain_text("force=true")
    page.get_by_label("Take over objects the specs folder manages").check()
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#spec-result")).to_contain_text("owned: rescheduled", timeout=WAIT)
    expect(page.locator("#spec-result")).to_contain_text("taken over from the specs folder")
    page.screenshot(path=str(screenshots / "specs-take-over-1280.png"), full_page=True)
    doc = runtime.store.find_by_name("admin", "Task", "owned")
    assert doc is not None and doc["manager"] == "api:admin" and doc["generation"] == 2


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
    expect(page.get_by_role("link", name="Specs", exact=True)).to_be_visible(timeout=WAIT)


@pytest.mark.parametrize("width", [1280, 375])
def test_dashboard_charts_what_is_due_and_what_was_called(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path, width: int
) -> None:
    page = open_page(browser, app, width=width)
    sign_in(page, "admin", "admin-password")
    schedule(page, demo.url + "/ok?now", 1, "called")
    schedule(page, demo.url + "/fail", 1, "refused")
    schedule(page, demo.url + "/ok?later", 1800, "later")
    demo.wait_for(1, "/ok", timeout=20)
    demo.wait_for(1, "/fail", timeout=20)
    go(page, "dashboard")
    # the timeline has a mark for what is due within the hour, the bars count the calls made
    expect(page.locator("#timeline")).to_have_attribute("data-points", "1", timeout=WAIT)
    expect(page.locator("#calls")).to_have_attribute("data-calls", "2", timeout=WAIT)
    expect(page.locator("#timeline canvas")).to_be_visible()
    expect(page.locator("#calls canvas")).to_be_visible()
    expect(page.locator("#upcoming")).to_contain_text("later")
    expect(page.locator("#calls-total")).to_contain_text("1 failed")
    # the counts and the calls are two reads: a result written between them shows at the next refresh
    completed = page.locator(".count-card[data-kind='Task'][data-state='completed'] [data-count]")
    expect(completed).to_have_text("1", timeout=WAIT)
    failed = page.locator(".count-card[data-kind='Task'][data-state='failed'] [data-count]")
    expect(failed).to_have_text("1", timeout=WAIT)
    canvas = page.locator("#calls canvas").bounding_box()
    assert canvas and canvas["width"] >= 200 and canvas["height"] >= 100
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=str(screenshots / f"dashboard-{width}.png"), full_page=True)
    # a count card opens the list behind it
    page.locator(".count-card[data-kind='Task'][data-state='failed']").click()
    expect(page.locator("tr[data-name='refused']")).to_be_visible(timeout=WAIT)
    assert not page.errors  # type: ignore[attr-defined]


def test_rows_are_cards_on_a_phone_and_their_buttons_work(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    page = open_page(browser, app, width=375)
    sign_in(page, "admin", "admin-password")
    schedule(page, demo.url + "/ok?phone", 3600, "on-the-phone")
    row = page.locator("tr[data-name='on-the-phone']")
    expect(row).to_be_visible(timeout=WAIT)
    assert row.evaluate("tr => getComputedStyle(tr).display") == "block"
    assert page.locator("table.objects thead").evaluate("h => h.getBoundingClientRect().height") <= 1
    # each cell says what it is, and the row fits the screen
    assert "Next" in row.locator("td[data-label='Next']").evaluate(
        "td => getComputedStyle(td, '::before').content"
    )
    box = row.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375
    cancel = row.get_by_role("button", name="Cancel on-the-phone")
    expect(cancel).to_be_visible()
    button = cancel.bounding_box()
    assert button and button["x"] + button["width"] <= 375 and button["height"] >= 36
    page.screenshot(path=str(screenshots / "task-cards-375.png"), full_page=True)
    cancel.click()
    confirm(page)
    expect(page.locator("#alert")).to_contain_text("cancelled", timeout=WAIT)
    page.get_by_role("tab", name=re.compile("^cancelled")).click()
    expect(page.locator("tr[data-name='on-the-phone'] [data-state]")).to_have_text("cancelled", timeout=WAIT)


def test_the_spec_editor_shows_eighteen_lines(browser, app: Runtime) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "specs")
    editor = page.get_by_label("Spec YAML")
    line = editor.evaluate("e => parseFloat(getComputedStyle(e).lineHeight)")
    height = editor.evaluate("e => e.clientHeight")
    assert height >= 18 * line, f"the editor is {height} px high, 18 lines need {18 * line} px"
    assert editor.evaluate("e => getComputedStyle(e).resize") == "vertical"


def test_a_recurring_task_from_the_form_runs_and_can_be_suspended(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasks")
    open_form(page, "Task")
    page.get_by_label("URL").fill(demo.url + "/ok?beat")
    page.get_by_label("At a fixed rate").check()
    page.get_by_label("Every").fill("1s")
    page.get_by_label("Name (optional)").fill("heartbeat")
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.locator("#alert")).to_contain_text("Task heartbeat created", timeout=WAIT)
    demo.wait_for(2, "/ok", timeout=30)
    row = page.locator("tr[data-name='heartbeat']")
    expect(row).to_contain_text("recurring", timeout=WAIT)
    row.get_by_role("link", name="heartbeat").click()
    expect(page.locator("#schedule-words")).to_contain_text("every 1s", timeout=WAIT)
    expect(page.locator("#next-runs li")).not_to_have_count(0)
    expect(page.locator("#runs tbody tr")).not_to_have_count(0, timeout=WAIT)
    page.screenshot(path=str(screenshots / "recurring-detail-1280.png"), full_page=True)
    page.get_by_role("button", name="Suspend heartbeat").click()
    page.get_by_label("Why pause it (optional)").fill("new endpoint")
    page.get_by_role("button", name="Suspend", exact=True).click()
    expect(page.locator("#schedule-words")).to_contain_text("suspended", timeout=WAIT)
    expect(page.locator("#pause-reason")).to_contain_text("Paused: new endpoint")
    settled = len(demo.calls("/ok"))
    expect(page.get_by_role("button", name="Resume heartbeat")).to_be_visible(timeout=WAIT)
    page.get_by_role("button", name="Resume heartbeat").click()
    demo.wait_for(settled + 1, "/ok", timeout=30)
    expect(page.get_by_role("button", name="Suspend heartbeat")).to_be_visible(timeout=WAIT)
    assert not page.errors  # type: ignore[attr-defined]


def test_named_steps_show_their_checks_and_outputs(browser, app: Runtime, demo: DemoLambda) -> None:
    from lambdaop.spec import load_one

    (obj,) = load_one(
        f"""\
kind: TaskSet
metadata: {{name: pipeline}}
spec:
  steps:
    - name: build
      invoke: '{demo.url}/json?id=art-7'
      conditionCheck: {{invoke: '{demo.url}/ok?check'}}
    - name: deploy
      invoke: {{url: '{demo.url}/echo', method: POST, body: {{artifact: "${{{{ steps.build.output.id }}}}"}}}}
"""
    )
    app.applier.apply(obj, "admin")
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasksets")
    page.get_by_role("tab", name=re.compile("^All")).click()
    page.get_by_role("link", name="pipeline").click()
    expect(page.locator("#flow-main > li")).to_have_count(3)  # build, its check, deploy
    for key in ("step:build", "check:build", "step:deploy"):
        expect(page.locator(f"li[data-step='{key}']")).to_have_attribute("data-status", "done", timeout=WAIT)
    expect(page.locator("li[data-step='check:build']")).to_contain_text("Check after build")
    expect(page.locator("li[data-step='step:build'] .step-output")).to_contain_text('{"id":"art-7"}')
    # a longer output is laid out, a key to a line
    expect(page.locator("li[data-step='step:deploy'] .step-output")).to_contain_text('"artifact": "art-7"')
    assert not page.errors  # type: ignore[attr-defined]


def test_a_step_waiting_for_its_callback_says_so_until_it_comes(
    browser, app: Runtime, demo: DemoLambda
) -> None:
    import json

    import requests

    from lambdaop.spec import load_one

    (obj,) = load_one(
        f"""\
kind: TaskSet
metadata: {{name: approval}}
spec:
  steps:
    - name: approve
      waitForCallback:
        invoke: {{url: '{demo.url}/echo', method: POST, body: {{reply: "${{{{ callback.url }}}}"}}}}
        timeout: 10m
    - name: after
      invoke: '{demo.url}/json?by=${{{{ steps.approve.output.by }}}}'
"""
    )
    app.applier.apply(obj, "admin")
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasksets")
    page.get_by_role("tab", name=re.compile("^All")).click()
    page.get_by_role("link", name="approval").click()
    step = page.locator("li[data-step='step:approve']")
    expect(step).to_have_attribute("data-status", "waiting", timeout=WAIT)
    expect(step).to_contain_text("waiting for its callback until")
    (asked,) = demo.wait_for(1, "/echo")
    reply = json.loads(asked.body)["reply"]
    answer = requests.post(reply, json={"status": "success", "output": {"by": "ana"}}, timeout=30)
    assert answer.status_code == 200, answer.text
    expect(step).to_have_attribute("data-status", "done", timeout=WAIT)
    expect(page.locator("li[data-step='step:after']")).to_have_attribute("data-status", "done", timeout=WAIT)
    expect(step.locator(".step-output")).to_contain_text('{"by":"ana"}')
    expect(page.locator("#attempts tr[data-step='callback:approve']")).to_contain_text("Callback for approve")
    assert not page.errors  # type: ignore[attr-defined]


def test_a_parallel_step_shows_its_branches_and_their_outputs(
    browser, app: Runtime, demo: DemoLambda
) -> None:
    from lambdaop.spec import load_one

    (obj,) = load_one(
        f"""\
kind: TaskSet
metadata: {{name: fanned}}
spec:
  steps:
    - name: fan
      parallel:
        maxConcurrency: 1
        branches:
          - [{{name: one, invoke: '{demo.url}/json?id=a'}}]
          - [{{name: two, invoke: '{demo.url}/json?id=b'}}, {{name: three, invoke: '{demo.url}/json?id=c'}}]
    - name: after
      invoke: {{url: '{demo.url}/echo', method: POST, body: {{ids: "${{{{ steps.fan.output[*].id }}}}"}}}}
"""
    )
    app.applier.apply(obj, "admin")
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    go(page, "tasksets")
    page.get_by_role("tab", name=re.compile("^All")).click()
    page.get_by_role("link", name="fanned").click()
    expect(page.locator("#flow-main > li")).to_have_count(2)  # fan (its three branch steps inside), after
    expect(page.locator("li[data-step='step:fan'] .flow-branch .flow-line > li")).to_have_count(3)
    for key in ("step:fan", "step:fan/0/one", "step:fan/1/two", "step:fan/1/three", "step:after"):
        expect(page.locator(f"li[data-step='{key}']")).to_have_attribute("data-status", "done", timeout=WAIT)
    expect(page.locator("li[data-step='step:fan']")).to_contain_text("2 branches side by side, 1 at a time")
    second = page.locator(".flow-branch[data-branch='1']")
    expect(second.locator(".branch-head")).to_contain_text("Branch 2")
    expect(second.locator("li[data-step='step:fan/1/three'] .step-name")).to_have_text("three")
    fan = page.locator("li[data-step='step:fan'] > .node .step-output")  # its own, not its branches'
    expect(fan).to_contain_text('[{"id":"a"},{"id":"c"}]')
    ids = re.compile(r'"ids": \[\s*"a",\s*"c"\s*\]')  # a longer output is laid out
    expect(page.locator("li[data-step='step:after'] .step-output")).to_contain_text(ids)
    assert not page.errors  # type: ignore[attr-defined]


def test_a_call_waiting_for_a_place_of_its_limit_key_says_so(browser, app: Runtime, demo: DemoLambda) -> None:
    from lambdaop.spec import load_one

    def task(name: str) -> str:
        (obj,) = load_one(f"kind: Task\nmetadata: {{name: {name}}}\nspec: {{invoke: '{demo.url}/sleep?ms=5000', concurrency: {{key: target-a, limit: 1}}}}\n")  # fmt: skip
        return app.applier.apply(obj, "admin").id or ""

    task("first")
    demo.wait_for(1, "/sleep")
    second = task("second")
    page = open_page(browser, app)
    sign_in(page, "admin", "admin-password")
    page.evaluate("h => { location.hash = h; }", f"#/task/{second}")
    waiting = page.locator("#detail-waiting")
    expect(waiting).to_contain_text("Waiting for a place", timeout=WAIT)
    expect(waiting).to_contain_text("concurrency key target-a (at most 1 at once)")
    app.service.cancel(second, "admin")
    assert not page.errors  # type: ignore[attr-defined]
