"""A TaskSet's steps drawn as a graph on its page (steps.js), in real headless Chromium.

Each test runs a TaskSet against the demo endpoint and checks the drawing's structure, not its
pixels: the nodes of the main line in order, a parallel step's branches in order with their join,
the fallback and notifications off the main line, each node's state in words, where the run stands,
and the output a node shows once its toggle is pressed (by mouse or keyboard). Screenshots at 1280
and 375 px land beside the others.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import requests
from playwright.sync_api import Page, expect

from e2e.browsing import WAIT, go, open_page, sign_in
from lambdaop.runtime.runtime import Runtime
from lambdaop.spec import load_one
from lambdaop.tools.demo import DemoLambda


def applied(app: Runtime, text: str) -> None:
    (obj,) = load_one(text)
    app.applier.apply(obj, "admin")


def opened(browser, app: Runtime, name: str, width: int = 1280) -> Page:
    """The TaskSet's page, signed in, at `width` px."""
    page = open_page(browser, app, width)
    sign_in(page, "admin", "admin-password")
    go(page, "tasksets")
    page.get_by_role("tab", name=re.compile("^All mine")).click()
    page.get_by_role("link", name=name).click()
    expect(page.locator("#flow")).to_be_visible(timeout=WAIT)
    return page


def keys(page: Page, selector: str) -> list[str]:
    return page.locator(selector).evaluate_all("els => els.map(e => e.dataset.step)")


def statuses(page: Page, selector: str) -> list[str]:
    return page.locator(selector).evaluate_all("els => els.map(e => e.dataset.status)")


def fits(page: Page) -> None:
    """Nothing is wider than the screen: the drawing wraps or stacks rather than scroll sideways."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def redrawn(page: Page) -> None:
    """Wait until the page's refresh has drawn the steps again (a new element in place of the old)."""
    page.evaluate("document.getElementById('flow').dataset.old = 'yes'")
    page.wait_for_function("!document.getElementById('flow').dataset.old", timeout=WAIT)


def test_the_seed_form_is_drawn_as_tasks_with_checks_between_and_the_hooks_beside(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    applied(
        app,
        f"""\
kind: TaskSet
metadata: {{name: release-train}}
spec:
  tasks:
    - '{demo.url}/json?id=art-7'
    - {{url: '{demo.url}/fail?deploy', method: POST, retries: 1, retryDelay: 200ms}}
    - '{demo.url}/ok?verify'
  conditionCheck: {{invoke: '{demo.url}/flaky/healthy?fails=1', retries: 2, retryDelay: 200ms}}
  fallback: {{invoke: '{demo.url}/ok?rollback', on: [task]}}
  notify: [{{on: [failed], invoke: '{demo.url}/ok?told', retries: 0}}]
""",
    )
    page = opened(browser, app, "release-train")
    expect(page.locator("h1 + [data-state]")).to_have_text("failed", timeout=WAIT)
    expect(page.locator(".flow-hooks [data-step='notify:0']")).to_have_attribute("data-status", "done", timeout=WAIT)  # fmt: skip
    main = "#flow-main > li"
    assert keys(page, main) == ["task:0", "check:0", "task:1", "check:1", "task:2"]
    assert page.locator(main).evaluate_all("els => els.map(e => e.dataset.kind)") == ["task", "check", "task", "check", "task"]  # fmt: skip
    assert statuses(page, main) == ["done", "done", "failed", "skipped", "skipped"]
    # each node says its state and kind in words, not colour alone
    expect(page.locator("li[data-step='task:0'] .state-word")).to_have_text("done")
    expect(page.locator("li[data-step='check:1'] .state-word")).to_have_text("not run")
    expect(page.locator("li[data-step='check:0'] .node-kind")).to_have_text("condition check")
    expect(page.locator("li[data-step='check:0']")).to_contain_text("2 attempts")
    # where the run stands: it stopped at task 2, after its retry
    stopped = page.locator("li[data-step='task:1']")
    expect(stopped).to_have_attribute("aria-current", "step")
    expect(stopped).to_contain_text("stopped here")
    expect(stopped).to_contain_text("2 attempts")
    expect(stopped).to_contain_text("retries 1")
    expect(stopped.locator(".step-call")).to_have_text("POST /fail?deploy")
    expect(page.locator("#flow-main [aria-current]")).to_have_count(1)
    expect(page.locator("#flow-where")).to_have_text("Failed at Task 2 after 2 attempts. The fallback ran.")
    # the fallback and the notification are off the main line
    assert keys(page, ".flow-hooks li") == ["fallback", "notify:0"]
    expect(page.locator(".flow-hooks li[data-step='fallback']")).to_have_attribute("data-status", "done")
    expect(page.locator(".flow-hooks li[data-step='fallback'] .step-note")).to_have_text(
        "runs when a task fails"
    )
    expect(page.locator(".flow-hooks li[data-step='notify:0'] .step-note")).to_have_text(
        "told when a run fails"
    )
    # a click opens what a task answered
    first = page.locator("li[data-step='task:0'] .node-output")
    expect(first.locator("pre")).to_be_hidden()
    first.locator("summary").click()
    expect(first.locator("pre")).to_be_visible()
    expect(first.locator("pre")).to_contain_text('"id": "art-7"')
    page.screenshot(path=str(screenshots / "taskset-graph-seed-1280.png"), full_page=True)
    # the keyboard opens one too, and it stays open, with the focus, when the page refreshes
    toggle = stopped.locator(".node-output summary")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(stopped.locator(".node-output pre")).to_be_visible()
    expect(stopped.locator(".node-output pre")).to_contain_text('"ok": false')
    redrawn(page)
    expect(stopped.locator(".node-output pre")).to_be_visible()
    assert page.evaluate("document.activeElement.closest('[data-output-for]').dataset.outputFor") == "task:1"
    expect(first.locator("pre")).to_be_visible()
    assert not page.errors  # type: ignore[attr-defined]

    phone = opened(browser, app, "release-train", 375)
    assert keys(phone, "#flow-main > li") == ["task:0", "check:0", "task:1", "check:1", "task:2"]
    assert keys(phone, ".flow-hooks li") == ["fallback", "notify:0"]
    fits(phone)
    phone.locator("li[data-step='task:0'] .node-output summary").click()
    expect(phone.locator("li[data-step='task:0'] .node-output pre")).to_be_visible()
    fits(phone)
    phone.screenshot(path=str(screenshots / "taskset-graph-seed-375.png"), full_page=True)
    assert not phone.errors  # type: ignore[attr-defined]


PARALLEL = """\
kind: TaskSet
metadata: {{name: fanout}}
spec:
  steps:
    - name: build
      invoke: '{url}/json?id=art-7'
    - name: tests
      parallel:
        maxConcurrency: 1
        branches:
          - [{{name: unit, invoke: '{url}/json?suite=unit'}}]
          - - {{name: integration, invoke: '{url}/fail?integration', retries: 1, retryDelay: 200ms}}
            - {{name: summary, invoke: '{url}/json?suite=summary'}}
          - [{{name: lint, invoke: '{url}/json?suite=lint'}}]
    - name: report
      invoke: {{url: '{url}/echo', method: POST, body: {{suites: "${{{{ steps.tests.output[*].suite }}}}"}}}}
  fallback:
    invoke: {{url: '{url}/echo', method: POST, body: {{branches: "${{{{ steps.tests.branches }}}}"}}}}
"""


def test_a_parallel_step_with_a_failing_branch_is_drawn_with_its_branches_side_by_side_and_their_join(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    applied(app, PARALLEL.format(url=demo.url))
    page = opened(browser, app, "fanout")
    expect(page.locator("h1 + [data-state]")).to_have_text("failed", timeout=WAIT)
    expect(page.locator(".flow-hooks li[data-step='fallback']")).to_have_attribute("data-status", "done", timeout=WAIT)  # fmt: skip
    assert keys(page, "#flow-main > li") == ["step:build", "step:tests", "step:report"]
    assert statuses(page, "#flow-main > li") == ["done", "failed", "skipped"]
    tests = page.locator("#flow-main > li[data-step='step:tests']")
    expect(tests.locator(".node-kind").first).to_have_text("parallel")
    expect(tests).to_contain_text("3 branches side by side, 1 at a time")
    # the branches in their order, each with its steps in theirs
    branches = tests.locator(".flow-branch")
    assert branches.evaluate_all("els => els.map(e => e.dataset.branch)") == ["0", "1", "2"]
    assert statuses(page, "li[data-step='step:tests'] .flow-branch") == ["done", "failed", "cancelled"]
    expect(branches.nth(2).locator(".branch-head .state-word")).to_have_text("cancelled")
    assert keys(page, ".flow-branch[data-branch='1'] .flow-line > li") == ["step:tests/1/integration", "step:tests/1/summary"]  # fmt: skip
    assert statuses(page, ".flow-branch[data-branch='1'] .flow-line > li") == ["failed", "skipped"]
    assert statuses(page, ".flow-branch[data-branch='2'] .flow-line > li") == ["cancelled"]
    failed = page.locator("li[data-step='step:tests/1/integration']")
    expect(failed).to_have_attribute("aria-current", "step")
    expect(failed).to_contain_text("2 attempts")
    expect(page.locator("#flow-where")).to_have_text("Failed at integration (branch 2 of tests) after 2 attempts. The fallback ran.")  # fmt: skip
    expect(tests.locator(".flow-join")).to_have_attribute("data-status", "failed")
    expect(tests.locator(".flow-join")).to_contain_text("Join: all must succeed")
    # outputs: a branch step's, and the parallel step's (one item per branch)
    unit = page.locator("li[data-step='step:tests/0/unit'] .node-output")
    expect(unit.locator("pre")).to_be_hidden()
    unit.locator("summary").click()
    expect(unit.locator("pre")).to_have_text('{"suite":"unit"}')
    own = page.locator("li[data-step='step:tests'] > .node .node-output")
    own.locator("summary").click()
    expect(own.locator("pre")).to_have_text('[{"suite":"unit"},null,null]')
    expect(own).to_contain_text("steps.tests.output[i]")
    page.screenshot(path=str(screenshots / "taskset-graph-parallel-1280.png"), full_page=True)
    assert not page.errors  # type: ignore[attr-defined]

    phone = opened(browser, app, "fanout", 375)
    expect(phone.locator(".flow-branch")).to_have_count(3)
    # on a phone the branches stack: each below the one before, in their order
    tops = phone.locator(".flow-branch").evaluate_all("els => els.map(e => e.getBoundingClientRect().top)")
    assert tops == sorted(tops) and len(set(tops)) == 3, tops
    fits(phone)
    phone.screenshot(path=str(screenshots / "taskset-graph-parallel-375.png"), full_page=True)
    assert not phone.errors  # type: ignore[attr-defined]


def test_a_step_waiting_for_its_callback_is_marked_where_the_run_stands_until_it_comes(
    browser, app: Runtime, demo: DemoLambda, screenshots: Path
) -> None:
    applied(
        app,
        f"""\
kind: TaskSet
metadata: {{name: approval}}
spec:
  steps:
    - name: build
      invoke: '{demo.url}/json?id=art-7'
    - name: approve
      waitForCallback:
        invoke: {{url: '{demo.url}/echo', method: POST, body: {{reply: "${{{{ callback.url }}}}"}}}}
        timeout: 10m
    - name: deploy
      invoke: '{demo.url}/json?by=${{{{ steps.approve.output.by }}}}'
""",
    )
    page = opened(browser, app, "approval")
    phone = opened(browser, app, "approval", 375)
    for shown in (page, phone):
        approve = shown.locator("li[data-step='step:approve']")
        expect(approve).to_have_attribute("data-status", "waiting", timeout=WAIT)
        expect(approve).to_have_attribute("aria-current", "step")
        expect(approve.locator(".node-kind")).to_have_text("waits for a callback")
        expect(approve).to_contain_text("waiting for its callback until")
        expect(shown.locator("#flow-where")).to_contain_text("Now at approve: waiting for its callback until")
        assert statuses(shown, "#flow-main > li") == ["done", "waiting", "pending"]
    expect(phone.locator("li[data-step='step:deploy'] .state-word")).to_have_text("not started")
    fits(phone)
    page.screenshot(path=str(screenshots / "taskset-graph-callback-1280.png"), full_page=True)
    phone.screenshot(path=str(screenshots / "taskset-graph-callback-375.png"), full_page=True)

    (asked,) = demo.wait_for(1, "/echo")
    answer = requests.post(json.loads(asked.body)["reply"], json={"status": "success", "output": {"by": "ana"}}, timeout=30)  # fmt: skip
    assert answer.status_code == 200, answer.text
    expect(page.locator("h1 + [data-state]")).to_have_text("completed", timeout=WAIT)
    assert statuses(page, "#flow-main > li") == ["done", "done", "done"]
    expect(page.locator("#flow-main [aria-current]")).to_have_count(0)
    expect(page.locator("#flow-where")).to_have_text("Completed: every step is done.")
    approve = page.locator("li[data-step='step:approve'] .node-output")
    approve.locator("summary").click()
    # the callback's output, not the call's answer
    expect(approve.locator("pre")).to_have_text('{"by":"ana"}')
    deploy = page.locator("li[data-step='step:deploy'] .node-output")
    deploy.locator("summary").focus()
    page.keyboard.press(" ")
    expect(deploy.locator("pre")).to_have_text('{"by":"ana"}')
    assert not page.errors  # type: ignore[attr-defined]
    assert not phone.errors  # type: ignore[attr-defined]
