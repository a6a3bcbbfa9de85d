"""Fixtures that start real things once per session: the embedded store and a demo Lambda.

Each test gets a fresh database on the shared embedded server and a cleared
demo endpoint. Nothing here is mocked.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Counting
from lambdaop.loop.outbound import Policy
from lambdaop.runtime.config import Config
from lambdaop.runtime.runtime import Runtime
from lambdaop.store.embedded import EmbeddedServer
from lambdaop.store.mongo import MongoStore, start_embedded
from lambdaop.tools.demo import DemoLambda

_db_names = itertools.count()
LOOPBACK = Policy.parse("127.0.0.1")  # tests call only the local endpoints they start


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything outside tests/unit talks to real parts: `pytest -m "not integration"` is the fast subset."""
    for item in items:
        if "unit" not in item.path.parts:
            item.add_marker(pytest.mark.integration)


class FakeClock:
    """Time as an input: tests move it by hand."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self._now = now or dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
        self._mono = 1000.0

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> dt.datetime:
        self._now += dt.timedelta(seconds=seconds)
        self._mono += seconds
        return self._now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path_factory.mktemp("store"))
    start_embedded(server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def store_uri(embedded: EmbeddedServer) -> str:
    return embedded.uri + "&retryWrites=false"


@pytest.fixture
def database() -> str:
    return f"t{os.getpid()}_{next(_db_names)}"


@pytest.fixture
def store(store_uri: str, database: str) -> Iterator[MongoStore]:
    s = MongoStore(store_uri, database, embedded=True)
    s.ensure_indexes()
    yield s
    s.client.drop_database(database)
    s.close()


@pytest.fixture(scope="session")
def demo_server() -> Iterator[DemoLambda]:
    server = DemoLambda().start()
    yield server
    server.stop()


@pytest.fixture
def demo(demo_server: DemoLambda) -> DemoLambda:
    demo_server.reset()
    return demo_server


@pytest.fixture
def make_runtime(store_uri: str, database: str, tmp_path: Path) -> Iterator:
    """Start a Runtime on the shared embedded server (a fresh database per test)."""
    started: list[Runtime] = []

    def make(specs_dir: Path | None = None, env: dict[str, str] | None = None, **kw: object) -> Runtime:
        config = Config(
            state_dir=tmp_path / f"state{len(started)}",
            specs_dir=specs_dir,
            mongodb_uri=store_uri,
            database=database,
            env=env or {},
            **{"port": 0, "allow_hosts": LOOPBACK, **kw},  # type: ignore[arg-type]
        )
        runtime = Runtime(config)
        runtime.start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()


@pytest.fixture
def endpoint() -> Iterator[Counting]:
    """A loopback endpoint that counts the requests it serves at once (see helpers.Counting)."""
    server = Counting()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
