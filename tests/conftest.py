"""Shared fixtures: the anyio backend, a running emulator and a client pointed at it."""

from __future__ import annotations

import pytest

pytest_plugins = ["anyio"]


@pytest.fixture
def anyio_backend() -> str:
    """Default backend; modules that must run on both set ``pytestmark`` with their own fixture."""
    return "asyncio"
