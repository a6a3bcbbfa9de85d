"""Callback URLs for waitForCallback steps: the base the service answers on, and the secret that signs them.

`CallbackUrls` makes the single-use URL a waiting step hands its target
(`${{ callback.url }}`): the service's public base, then `/callbacks/` and a
token signed with the callback secret (`engine.callbacks.sign`). The base is
known once the API listens, so the runtime sets it then. The secret is never
logged, and the token never kept: the invoker takes it out of what it keeps
of the call, like any secret the call sent. Called by the loop's results and
the app's callback handling.
"""

from __future__ import annotations

from lambdaop.engine import callbacks
from lambdaop.engine.progress import Progress
from lambdaop.engine.record import StoredObject


class CallbackUrls:
    def __init__(self, secret: bytes, base: str = "") -> None:
        self._secret = secret
        self.base = base.rstrip("/")

    def __repr__(self) -> str:  # never the secret
        return f"CallbackUrls(base={self.base!r})"

    def token(self, record: StoredObject, progress: Progress) -> str:
        return callbacks.sign(self._secret, record.id, callbacks.nonce(record.generation, progress))

    def url(self, token: str) -> str:
        return f"{self.base}/callbacks/{token}"

    def read(self, token: str) -> tuple[str, str] | None:
        """(object id, wait) of a token this service signed, else None."""
        return callbacks.read(self._secret, token)
