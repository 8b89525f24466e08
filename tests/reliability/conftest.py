from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.private import Servers, system_on
from tests.system.conftest import system
from tests.system.system import System

__all__ = ["private_system", "servers", "system"]


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Private PostgreSQL, RabbitMQ and Redis, not started yet; removed after."""
    private = Servers()
    yield private
    private.close()


@pytest.fixture
def private_system(servers: Servers, tmp_path: Path) -> Iterator[System]:
    """The system on ``servers`` (not started yet); its log is printed after."""
    log = tmp_path / "services.log"
    running = system_on(servers, log)
    yield running
    running.stop()
    if log.exists():
        print(log.read_text()[-5000:])
