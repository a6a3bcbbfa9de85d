"""`POST /specs` (apply YAML or JSON documents) and `DELETE /specs/{kind}/{name}` (prune one).

A body is checked whole by the batch validator first: with any problem,
nothing of it is applied. Called by the app factory.
"""

from __future__ import annotations

import falcon

from lambdaop.api.auth import user_of
from lambdaop.api.bodies import JSON_TYPES, YAML_TYPES, media_message, media_type, read_body
from lambdaop.app.applying import Applier, managed_message
from lambdaop.app.view import masked, present
from lambdaop.core.errors import BadRequest, Conflict, NotFound, Problem, SpecInvalid, UnsupportedMediaType
from lambdaop.spec import kind_named, load_documents


class Specs:
    def __init__(self, applier: Applier) -> None:
        self.applier = applier

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        media = media_type(req)
        if media and media not in YAML_TYPES + JSON_TYPES:
            raise UnsupportedMediaType(media_message(media, "application/yaml or application/json"))
        try:
            text = read_body(req).decode()
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8 text") from None
        docs = load_documents(text)
        problems = self.applier.checker.check([(None, docs)])
        if not docs:
            problems.append(Problem("no spec documents in the body"))
        if problems:
            raise SpecInvalid("invalid spec; nothing was applied", problems)
        user = user_of(req)
        force = req.get_param_as_bool("force", default=False)
        if req.get_param_as_bool("dryRun", default=False):  # what would happen, document by document
            resp.media = {"dryRun": True, "results": masked(self.applier.preview(docs, user.name, f"api:{user.name}", force))}  # fmt: skip
            return
        if not force:
            managed = self.applier.managed_by_folder(docs, user.name)
            if managed:
                raise Conflict(
                    "some documents change objects the specs folder manages; nothing was applied", managed
                )
        results = self.applier.apply_documents(docs, user.name, manager=f"api:{user.name}", force=force)
        resp.media = {"results": [r.as_dict() for r in results]}

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, kind: str, name: str) -> None:
        real = kind_named(kind)
        if real is None:
            raise NotFound(f"no kind {kind!r}; use Task or TaskSet")
        user = user_of(req)
        service = self.applier.service
        current = service.find(user.name, real, name)
        managed = current is not None and current.managed_by.startswith("folder:")
        if managed and current is not None and not req.get_param_as_bool("force", default=False):
            raise Conflict(managed_message(current, "delete"))
        record = service.prune(user.name, real, name)
        resp.media = {"deleted": True, "object": present(record, viewer=user.name)}
