"""Delivery of callbacks: Jumio's URL rules, the loopback exception, retries with exponential back-off."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import httpx

from ._outcomes import callback_form, images_received_form
from ._state import CallbackRecord, EmulatorState, Scan, format_timestamp
from ._urls import callback_url_problem, is_loopback_http_url

__all__ = ["CallbackDispatcher"]

logger = logging.getLogger("netverify_async.emulator")

_USER_AGENT = "netverify-async-emulator callback"


class CallbackDispatcher:
    """Sends each scan's callbacks from the application's task group, while the server runs."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._config = state.config
        self._tasks: anyio.abc.TaskGroup | None = None
        self._client: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def running(self, tasks: anyio.abc.TaskGroup) -> AsyncIterator[None]:
        """Deliver callbacks through ``tasks`` until the block ends."""
        timeout = httpx.Timeout(self._config.callback_timeout)
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, follow_redirects=False) as client:
            self._client, self._tasks = client, tasks
            try:
                yield
            finally:
                self._client, self._tasks = None, None

    def schedule(self, scan: Scan) -> None:
        """Arrange the callbacks of a new scan (nothing when it has nowhere to go)."""
        target = self._config.callback_url_override or scan.callback_url
        if target is None:
            return
        if self._tasks is None:
            logger.warning("callback for a scan not sent: the application's lifespan is not running")
            self._state.record_callback(
                _record(scan, "final", target, "skipped", reason="lifespan not running")
            )
            return
        self._tasks.start_soon(self._run_guarded, scan, target)

    async def _run_guarded(self, scan: Scan, target: str) -> None:
        # A failure here must never take the application's task group (and so the server) down with it.
        try:
            await self._run(scan, target)
        except Exception as exc:  # pragma: no cover - defensive
            logger.exception("callback for a scan could not be sent")
            self._state.record_callback(_record(scan, "final", target, "failed", reason=type(exc).__name__))

    async def _run(self, scan: Scan, target: str) -> None:
        problem = callback_url_problem(target, allow_http=self._config.allow_http_callbacks)
        if problem is not None:
            self._state.record_callback(
                _record(scan, "final", target, "rejected", reason=f"callback URL {problem}")
            )
            return
        if not is_loopback_http_url(target) and not self._config.deliver_external_callbacks:
            reason = "non-loopback host (enable deliver_external_callbacks to call it)"
            self._state.record_callback(_record(scan, "final", target, "skipped", reason=reason))
            return
        if scan.on_all_steps:
            await self._deliver(
                scan, target, "images_received", images_received_form(scan, format_timestamp())
            )
        await anyio.sleep(max(0.0, scan.ready_monotonic - time.monotonic()))
        if scan.reference not in self._state.scans:  # deleted meanwhile
            self._state.record_callback(_record(scan, "final", target, "skipped", reason="scan deleted"))
            return
        await self._deliver(scan, target, "final", callback_form(scan, format_timestamp()))

    async def _deliver(self, scan: Scan, target: str, kind: str, form: dict[str, str]) -> None:
        assert self._client is not None
        attempts = 0
        status: int | None = None
        reason: str | None = None
        delay = self._config.callback_backoff
        for attempt in range(self._config.callback_retries + 1):
            if attempt:
                await anyio.sleep(delay)
                delay *= 2
            attempts += 1
            try:
                response = await self._client.post(target, data=form, headers={"User-Agent": _USER_AGENT})
            except httpx.HTTPError as exc:
                status, reason = None, type(exc).__name__
                continue
            status = response.status_code
            if 200 <= status < 300:
                self._state.record_callback(_record(scan, kind, target, "delivered", attempts, status))
                return
            reason = f"HTTP {status}"
        logger.info("callback delivery failed after %d attempts: %s", attempts, reason)
        self._state.record_callback(_record(scan, kind, target, "failed", attempts, status, reason))


def _record(
    scan: Scan,
    kind: str,
    url: str | None,
    result: str,
    attempts: int = 0,
    status: int | None = None,
    reason: str | None = None,
) -> CallbackRecord:
    return CallbackRecord(scan.reference, kind, url, result, attempts, status, reason)
