"""The exceptions and warnings raised by netverify-async.

Every exception the library raises on purpose derives from :class:`NetverifyError`::

    NetverifyError
    ├── ConfigurationError            bad client settings (credentials, User-Agent, base URL, TLS)
    ├── RequestValidationError        the request breaks a documented rule; ``.errors`` lists every violation
    │                                 (also a ValueError)
    ├── PreflightError                an image would be refused by Jumio; ``.report`` says why (also a ValueError)
    ├── CallbackParseError            a body that is not a Jumio callback at all (also a ValueError)
    ├── CallbackOriginError           a callback from an address that is not Jumio's
    ├── JournalError                  the batch journal cannot be used or refuses an operation
    ├── BatchItemError                one batch item failed unexpectedly (``__cause__``); the batch went on
    ├── RateLimiterError              the shared (Redis) rate limiter failed or timed out; nothing was sent
    ├── RequestError                  a call to the API failed; ``.safe_to_retry`` says if resending is harmless
    │   ├── TransportError            no usable HTTP answer
    │   │   ├── ConnectError          never sent: DNS, refused connection, TLS handshake (safe to retry)
    │   │   ├── PoolTimeoutError      never sent: no free connection in time (safe to retry)
    │   │   └── ReadError             sent, but the answer was lost or too slow (ambiguous)
    │   ├── ResponseError             the server answered badly (oversized, malformed, redirected)
    │   ├── APIError                  the server answered with an error status; ``.status_code``, ``.body``,
    │   │   │                         ``.tracking_id``
    │   │   ├── BadRequestError       400
    │   │   ├── AuthenticationError   401
    │   │   ├── ForbiddenError        403 (bad credentials, missing or suspicious headers)
    │   │   ├── NotFoundError         404
    │   │   ├── RateLimitedError      429 (and 503 with Retry-After); ``.retry_after`` seconds
    │   │   └── ServerError           5xx
    │   ├── DeadlineExceeded          the overall deadline of the retry policy ran out
    │   └── RetryBudgetExhausted      the client-wide retry budget is spent; the last failure is ``__cause__``
    └── SubmissionOutcomeUnknown      performNetverify may or may not have created a (billed) scan; reconcile
                                      with ``.merchant_id_scan_reference`` before sending it again

    NetverifyWarning (UserWarning)    something allowed but probably not what you want
    └── PreflightWarning              an image that Jumio accepts but may read badly

No message, ``repr`` or attribute of these exceptions carries an API secret, image bytes or personal data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BatchItemError",
    "CallbackOriginError",
    "CallbackParseError",
    "ConfigurationError",
    "ConnectError",
    "DeadlineExceeded",
    "ForbiddenError",
    "JournalError",
    "NetverifyError",
    "NetverifyWarning",
    "NotFoundError",
    "PoolTimeoutError",
    "PreflightError",
    "PreflightWarning",
    "RateLimitedError",
    "RateLimiterError",
    "ReadError",
    "RequestError",
    "RequestValidationError",
    "ResponseError",
    "RetryBudgetExhausted",
    "ServerError",
    "SubmissionOutcomeUnknown",
    "TransportError",
    "ValidationIssue",
]


class NetverifyError(Exception):
    """Base class of every exception raised on purpose by netverify-async."""


class NetverifyWarning(UserWarning):
    """Something the API allows but that is probably not what the caller meant."""


class PreflightWarning(NetverifyWarning):
    """An image that will be accepted but may be read badly (alpha channel, CMYK, low resolution...)."""


class ConfigurationError(NetverifyError, ValueError):
    """A client setting is missing or invalid (credentials, User-Agent, region, base URL, TLS options)."""


@attrs.frozen
class ValidationIssue:
    """One broken rule: the wire path of the field, a stable machine code and a human message.

    ``path`` uses the wire (camelCase) names joined by dots, e.g. ``userConsent.consent.obtainedAt``.
    The message never repeats the offending value, so it is safe to log.
    """

    path: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.code}]"


class RequestValidationError(NetverifyError, ValueError):
    """The request breaks one or more documented rules; nothing was sent.

    ``errors`` holds every violation found, not only the first.
    """

    def __init__(self, errors: Sequence[ValidationIssue]) -> None:
        self.errors: tuple[ValidationIssue, ...] = tuple(errors)
        count = len(self.errors)
        lines = "; ".join(str(e) for e in self.errors[:20])
        more = f"; and {count - 20} more" if count > 20 else ""
        super().__init__(f"{count} validation error{'s' if count != 1 else ''}: {lines}{more}")

    @property
    def codes(self) -> set[str]:
        """The set of rule codes that were broken."""
        return {e.code for e in self.errors}

    @property
    def paths(self) -> set[str]:
        """The set of wire paths that have at least one violation."""
        return {e.path for e in self.errors}

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errors,))


class PreflightError(NetverifyError, ValueError):
    """An image failed preflight; ``report`` (a ``PreflightReport``) lists the problems. Nothing was sent."""

    def __init__(self, message: str, report: Any = None, role: str | None = None) -> None:
        super().__init__(message)
        self.report = report
        self.role = role


class CallbackParseError(NetverifyError, ValueError):
    """The body is not a Jumio callback at all (not a form, or no scan reference / status)."""


class CallbackOriginError(NetverifyError):
    """A callback arrived from an address that is not on the configured allowlist."""


class JournalError(NetverifyError):
    """The submission journal cannot be opened or refuses an operation (e.g. resending unknown outcomes)."""


class RequestError(NetverifyError):
    """A call to the API failed.

    ``safe_to_retry`` is True when the server certainly did not process the request, so sending it again cannot
    create a second scan. ``operation`` names the API call; ``merchant_id_scan_reference`` is set for submissions.
    """

    safe_to_retry: bool = False

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        merchant_id_scan_reference: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.merchant_id_scan_reference = merchant_id_scan_reference
        self.attempts = attempts


class TransportError(RequestError):
    """No usable HTTP answer came back."""


class ConnectError(TransportError):
    """The request never left: DNS failure, refused connection, connect timeout or TLS handshake failure."""

    safe_to_retry = True


class PoolTimeoutError(TransportError):
    """The request never left: no connection became free in time."""

    safe_to_retry = True


class ReadError(TransportError):
    """The request was sent but the answer was lost (timeout or dropped connection): outcome unknown."""


class ResponseError(RequestError):
    """The server's answer could not be used: too large, malformed, or a redirect that is never followed."""

    def __init__(self, message: str, *, status_code: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status_code = status_code


class APIError(RequestError):
    """The API answered with an error status.

    ``body`` is the parsed JSON error body when there was a well-formed one (else None); ``tracking_id`` is the
    ``X-Trackingid`` header to quote to Jumio support.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Mapping[str, Any] | None = None,
        tracking_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.status_code = status_code
        self.body = body
        self.tracking_id = tracking_id

    def __str__(self) -> str:
        base = super().__str__()
        if self.tracking_id:
            return f"{base} (HTTP {self.status_code}, tracking id {self.tracking_id})"
        return f"{base} (HTTP {self.status_code})"


class BadRequestError(APIError):
    """400: the API refused the body."""


class AuthenticationError(APIError):
    """401: the credentials were refused."""


class ForbiddenError(APIError):
    """403: bad Basic auth, missing or suspicious headers, or suspicious parameter values."""


class NotFoundError(APIError):
    """404: no such scan (or wrong region)."""


class RateLimitedError(APIError):
    """429 (or 503 with Retry-After): the account's rate limit was hit.

    ``retry_after`` is the server's requested wait in seconds, when it gave one. The request was not processed,
    so it is safe to send again after the wait.
    """

    safe_to_retry = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed. 503 is safe to retry; 500/502/504 on a submission are ambiguous."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.safe_to_retry = self.status_code == 503


class DeadlineExceeded(RequestError):
    """The retry policy's overall deadline ran out before an answer came."""


class RetryBudgetExhausted(RequestError):
    """The client-wide retry budget is spent, so this failure was not retried (see ``__cause__``)."""


class SubmissionOutcomeUnknown(NetverifyError):
    """performNetverify may have created a scan (a billed transaction) but no answer came back.

    The request was not resent, because resending could create a duplicate. Reconcile with
    ``merchant_id_scan_reference`` (the Customer Portal, the callback, or your own records) before deciding to
    submit again. ``__cause__`` is the failure that made the outcome unknown.
    """

    def __init__(self, merchant_id_scan_reference: str, reason: str, *, attempts: int = 1) -> None:
        super().__init__(
            f"outcome unknown for merchantIdScanReference {merchant_id_scan_reference!r}: {reason}; "
            "not resent to avoid a duplicate scan"
        )
        self.merchant_id_scan_reference = merchant_id_scan_reference
        self.reason = reason
        self.attempts = attempts


class RateLimiterError(NetverifyError):
    """The shared rate limiter (Redis) could not be reached, timed out or answered badly; nothing was sent.

    ``__cause__`` is the underlying failure. The message names the limiter key, never the server address or
    its password.
    """


class BatchItemError(NetverifyError):
    """An unexpected exception while a batch handled one item; ``__cause__`` is the original exception.

    The batch reports it as that item's outcome and goes on with the others. ``merchant_id_scan_reference``
    names the item (None when the item was not a request); ``stage`` is ``"prepare"`` or ``"upload"``.
    """

    def __init__(self, message: str, *, merchant_id_scan_reference: str | None, stage: str) -> None:
        super().__init__(message)
        self.merchant_id_scan_reference = merchant_id_scan_reference
        self.stage = stage
