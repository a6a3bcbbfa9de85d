"""`POST /callbacks/{token}`: the URL a waitForCallback step hands its target (no API token: the
signed token in the path is the proof).

The body is JSON: `{"status": "success" | "failure" | "heartbeat", "output": ANY, "error": TEXT}`.
Answers 200 with what it did (`accepted`, or `extended` for a heartbeat), 403 for a wrong,
forged, used or superseded token, 409 while the call that handed the URL out has not been
answered yet (send it again shortly), 410 for a wait that had timed out (the callback is
recorded and ignored), 422 for a body that is not one of these. Thin: `app.callbacks` decides.
"""

from __future__ import annotations

import json

import falcon

from lambdaop.api.bodies import read_body
from lambdaop.app.callbacks import STATUSES, Callback, Callbacks
from lambdaop.core.errors import Forbidden, Problem, SpecInvalid


class CallbackRoute:
    def __init__(self, callbacks: Callbacks | None) -> None:
        self.callbacks = callbacks

    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        if self.callbacks is None:
            raise Forbidden("this service signs no callback URLs")
        data = read_body(req)
        try:
            body = json.loads(data) if data.strip() else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SpecInvalid("invalid callback", [Problem('send a JSON object: {"status": "success", "output": ...}', field="body")])  # fmt: skip
        status, error = body.get("status"), body.get("error")
        problems = []
        if status not in STATUSES:
            problems.append(
                Problem(f"status must be one of {', '.join(STATUSES)}; got {status!r}", field="status")
            )
        if error is not None and not isinstance(error, str):
            problems.append(Problem("error must be text", field="error"))
        extra = sorted(set(body) - {"status", "output", "error"})
        if extra:
            problems.append(Problem(f"unknown field(s) {', '.join(extra)}; a callback has status, output and error", field=extra[0]))  # fmt: skip
        if problems:
            raise SpecInvalid("invalid callback", problems)
        answer = self.callbacks.post(token, Callback(str(status), body.get("output"), error))
        resp.media = {"verdict": answer.verdict, "state": answer.state, "waitingUntil": answer.waiting_until}
