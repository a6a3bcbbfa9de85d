"""What the MongoDB store's request deadline makes of pymongo's errors: a lost connection, a primary
stepping down or shutting down, and a deadline passed become StoreUnavailable, which the API answers
503 with Retry-After; errors that say the request itself is wrong pass through as they are. The
errors are pymongo's own, raised inside the deadline as pymongo raises them; no server is needed
(the client connects only when an operation asks it to)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteConcernError,
    WriteError,
    WTimeoutError,
)

from lambdaop.core.errors import STATUS, StoreUnavailable
from lambdaop.store.mongo import MongoStore


def reply(code: int, name: str, errmsg: str) -> dict[str, object]:
    """A server's answer to a command that failed."""
    return {"ok": 0.0, "errmsg": errmsg, "code": code, "codeName": name}


def failed(
    code: int, name: str, errmsg: str, kind: type[OperationFailure] = OperationFailure
) -> OperationFailure:
    """The error pymongo raises for a server's error with this code (a command's, or one in a
    write's `writeErrors` or `writeConcernError`)."""
    return kind(errmsg, code, reply(code, name, errmsg))


LOST_OR_STEPPING_DOWN: dict[str, Exception] = {
    "connection lost": AutoReconnect("connection closed"),
    "connection timed out": NetworkTimeout("127.0.0.1:27017: timed out"),
    "no server to select": ServerSelectionTimeoutError("No replica set members found yet, Timeout: 1.0s"),
    "not writable primary": NotPrimaryError("not primary", reply(10107, "NotWritablePrimary", "not primary")),
    "not primary, no secondaryOk": NotPrimaryError("not primary", reply(13435, "NotPrimaryNoSecondaryOk", "not primary")),
    "stepped down": failed(189, "PrimarySteppedDown", "Not primary while writing to lambdaop.objects"),
    "interrupted by the step-down": failed(11602, "InterruptedDueToReplStateChange", "operation was interrupted"),
    "neither primary nor secondary": failed(13436, "NotPrimaryOrSecondary", "node is not in primary or recovering state"),
    "shutting down": failed(91, "ShutdownInProgress", "The server is in quiesce mode and will shut down"),
    "interrupted at shutdown": failed(11600, "InterruptedAtShutdown", "interrupted at shutdown"),
    "a write the step-down stopped": failed(189, "PrimarySteppedDown", "Not primary while writing to lambdaop.objects", WriteError),
    "stepped down waiting for the majority": failed(189, "PrimarySteppedDown", "Primary stepped down while waiting for replication", WriteConcernError),
    "the server's time limit": failed(50, "MaxTimeMSExpired", "operation exceeded time limit", ExecutionTimeout),
    "the majority did not answer in time": failed(64, "WriteConcernFailed", "waiting for replication timed out", WTimeoutError),
    "a bulk write's not writable primary": BulkWriteError({"writeErrors": [{"index": 0, "code": 10107, "errmsg": "not primary"}], "nInserted": 0}),
    "a bulk write's legacy not primary": BulkWriteError({"writeErrors": [{"index": 0, "code": 10058, "errmsg": "not master"}], "nInserted": 0}),
    "a bulk write's step-down waiting for the majority": BulkWriteError({"writeErrors": [], "writeConcernError": {"code": 189, "errmsg": "Primary stepped down"}}),
}  # fmt: skip

THE_REQUEST_IS_WRONG: dict[str, Exception] = {
    "a duplicate key": failed(11000, "DuplicateKey", "E11000 duplicate key error", DuplicateKeyError),
    "a bad value": failed(2, "BadValue", "$in needs an array"),
    "a document that fails validation": failed(121, "DocumentValidationFailure", "Document failed validation", WriteError),
    "a bulk write's duplicate key": BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000 duplicate key error"}], "nInserted": 0}),
}  # fmt: skip


@pytest.fixture
def store() -> Iterator[MongoStore]:
    store = MongoStore("mongodb://127.0.0.1:1/?connect=false")  # nothing listens there
    yield store
    store.close()


@pytest.mark.parametrize("error", LOST_OR_STEPPING_DOWN.values(), ids=LOST_OR_STEPPING_DOWN.keys())
def test_a_lost_connection_or_a_step_down_is_answered_503(store: MongoStore, error: Exception) -> None:
    with pytest.raises(StoreUnavailable) as raised, store.deadline(1.0):
        raise error
    assert STATUS[type(raised.value)] == 503 and raised.value.code == "store_unavailable"
    assert raised.value.retry_after > 0, "with Retry-After"
    assert raised.value.message.startswith("the store "), raised.value.message


@pytest.mark.parametrize("error", THE_REQUEST_IS_WRONG.values(), ids=THE_REQUEST_IS_WRONG.keys())
def test_an_error_of_the_request_itself_passes_through(store: MongoStore, error: Exception) -> None:
    with pytest.raises(type(error)) as raised, store.deadline(1.0):
        raise error
    assert raised.value is error


def test_a_store_that_does_not_answer_is_answered_within_the_deadline(store: MongoStore) -> None:
    began = time.monotonic()
    with pytest.raises(StoreUnavailable, match="did not answer within 0.3s"), store.deadline(0.3):
        store.objects.find_one({"_id": "x"})
    assert time.monotonic() - began < 5.0, "the deadline bounds the wait (pymongo's own is 10 s)"


def test_a_write_the_step_down_stopped_is_tried_again_and_a_wrong_one_is_refused() -> None:
    from lambdaop.store.contract import Op, WriteOutcome
    from lambdaop.store.mongo.commit import Commits

    op = Op("6b0fa3401da63159c00dbf13", "admin", "Task", "scheduled", "scheduled")
    for error in LOST_OR_STEPPING_DOWN.values():
        if isinstance(error, OperationFailure) and not isinstance(error, (ExecutionTimeout, WTimeoutError)):
            assert Commits._single_failure(op, error) is WriteOutcome.CONFLICT, error
    assert Commits._single_failure(op, THE_REQUEST_IS_WRONG["a document that fails validation"]) is WriteOutcome.ERROR  # fmt: skip
