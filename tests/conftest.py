"""Shared test configuration: everything under tests/integration/ is marked ``integration``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from replicator.sinks.settings import NEO4J_PASSWORD_ENV, NEO4J_PASSWORD_FILE_ENV
from replicator.stack.settings import DEFAULT_NEO4J_PASSWORD

_INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


# The tests run against the local stack (`replicator stack up`), whose password no client has built in
# any more: hand it to every client (and every daemon and CLI the tests start) through the
# environment, as an operator would, unless the environment names another server's already.
if not os.environ.get(NEO4J_PASSWORD_ENV) and not os.environ.get(NEO4J_PASSWORD_FILE_ENV):
    os.environ[NEO4J_PASSWORD_ENV] = DEFAULT_NEO4J_PASSWORD
