"""Logging: the loggers netverify-async writes to, and the ``NETVERIFY_LOG`` switch.

The library only creates log records; where they go is the application's choice. The package logger
``netverify_async`` carries a :class:`logging.NullHandler`, so nothing is printed unless the application
configures logging (``logging.basicConfig(level=logging.INFO)``, a ``dictConfig``, ...) or sets
``NETVERIFY_LOG``. No record carries an API secret, image bytes or personal data.

Every logger the package uses is a child of ``netverify_async``, so configuring that one name covers them all:

=============================  ==============================================================================
logger                         what it logs
=============================  ==============================================================================
``netverify_async``            the client: each failed attempt (DEBUG), each retry and its wait (INFO), each
                               accepted submission with its scan reference and tracking id (INFO)
``netverify_async.batch``      batches: a batch stopped early (repeated authentication refusals, an input or
                               journal error) and an unexpected error on one item (ERROR), a progress hook
                               that raised (ERROR, with its traceback)
``netverify_async.ratelimit``  the adaptive limiter lowering its rate after a 429 (DEBUG); the Redis limiter
                               failing to share a server's pause (WARNING)
``netverify_async.callbacks``  callback origin checks: a refused sender (DEBUG), a callback host that did not
                               resolve (WARNING)
``netverify_async.fastapi``    the FastAPI callback endpoint: accepted and repeated callbacks (INFO), refused
                               ones (WARNING), a handler that raised (ERROR)
``netverify_async.emulator``   the bundled emulator: callbacks it could not send (WARNING, ERROR) or whose
                               delivery failed after its retries (INFO)
``netverify_async.worker``     distributed workers: a journal operation retried or a lease lost (INFO,
                               WARNING), an item that could not become a request (WARNING), a worker stopping
                               on an error (ERROR); references only
=============================  ==============================================================================

``NETVERIFY_LOG`` (like ``OPENAI_LOG``): set it to ``debug``, ``info``, ``warning`` or ``error`` (any case)
and, when the package is imported, the ``netverify_async`` logger gets that level and a handler that writes to
stderr (``2025-01-31 12:00:00,000 DEBUG netverify_async: ...``). Records still propagate to the application's
own handlers. Unset or empty: nothing is configured. Any other value is ignored with a warning.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Mapping

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "LEVELS",
    "LOGGER_NAMES",
    "configure_from_environment",
    "environment_handler",
]

#: The environment variable that switches on logging to stderr.
ENVIRONMENT_VARIABLE = "NETVERIFY_LOG"
#: Its accepted values.
LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
#: Every logger name the package uses (``tests/test_logging.py`` checks the source against this list).
LOGGER_NAMES = (
    "netverify_async",
    "netverify_async.batch",
    "netverify_async.ratelimit",
    "netverify_async.callbacks",
    "netverify_async.fastapi",
    "netverify_async.emulator",
    "netverify_async.worker",
)
_PACKAGE_LOGGER = "netverify_async"
_HANDLER_NAME = "netverify_async:NETVERIFY_LOG"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def environment_handler() -> logging.Handler | None:
    """The stderr handler that ``NETVERIFY_LOG`` installed, if any."""
    for handler in logging.getLogger(_PACKAGE_LOGGER).handlers:
        if handler.get_name() == _HANDLER_NAME:
            return handler
    return None


def configure_from_environment(environ: Mapping[str, str] | None = None) -> logging.Handler | None:
    """Apply ``NETVERIFY_LOG``; returns the stderr handler it installed (or already had), else None.

    Called once when the package is imported; calling it again does not add a second handler.
    """
    value = (os.environ if environ is None else environ).get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if not value:
        return None
    level = LEVELS.get(value)
    if level is None:
        warnings.warn(
            f"{ENVIRONMENT_VARIABLE}={value[:20]!r} is ignored: use one of {', '.join(LEVELS)}",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    logger = logging.getLogger(_PACKAGE_LOGGER)
    logger.setLevel(level)
    handler = environment_handler()
    if handler is None:
        # stderr looked up when writing, so that a redirected or replaced sys.stderr is followed
        handler = _StderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
    return handler


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler on whatever ``sys.stderr`` is when a record is written (as ``logging.lastResort``)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # not StreamHandler's: it would fix the stream now

    @property
    def stream(self) -> object:
        return sys.stderr
