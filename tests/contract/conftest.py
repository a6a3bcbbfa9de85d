"""The store under contract: each test of tests/contract runs once per implementation.

"memory" is the in-process `MemoryStore`; "mongo" is `MongoStore` on the real
embedded server, a fresh database per test (the session fixtures of
tests/conftest.py start the server only when a "mongo" test runs).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lambdaop.store.contract import Store
from lambdaop.store.memory import MemoryStore
from lambdaop.store.mongo import MongoStore


@pytest.fixture(params=["memory", "mongo"])
def any_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    uri: str = request.getfixturevalue("store_uri")
    database: str = request.getfixturevalue("database")
    s = MongoStore(uri, database, embedded=True)
    s.ensure_indexes()
    yield s
    s.client.drop_database(database)
    s.close()
