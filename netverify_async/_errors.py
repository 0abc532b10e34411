"""The exceptions and warnings raised by netverify-async.

Every exception the library raises on purpose derives from :class:`NetverifyError`::

    NetverifyError
    ├── ConfigurationError            bad client settings (credentials, User-Agent, base URL, TLS)
    ├── RequestValidationError        the request breaks a documented rule; ``.errors`` lists every violation
    │   │                             (also a ValueError)
    │   └── IdTypeNotAcceptedError    the account does not accept this country + ID type (opt-in check)
    ├── PreflightError                an image would be refused by Jumio; ``.report`` says why (also a ValueError)
    ├── CallbackParseError            a body that is not a Jumio callback at all (also a ValueError)
    ├── CallbackOriginError           a callback from an address that is not Jumio's
    ├── JournalError                  the batch journal cannot be used or refuses an operation
    ├── BatchItemError                one batch item failed unexpectedly (``__cause__``); the batch went on
    ├── BatchStoppedError             a batch stopped early (repeated authentication refusals) or was stopped
    │                                 before an item's body was sent; what was not sent is resent by a re-run
    ├── RateLimiterError              the shared (Redis) rate limiter failed or timed out; nothing was sent
    ├── RequestError                  a call to the API failed; ``.kind`` (a :class:`FailureKind`) says whether
    │   │                             the server may have processed it, ``.safe_to_retry`` whether resending is
    │   │                             harmless
    │   ├── TransportError            no usable HTTP answer
    │   │   ├── ConnectError          never sent: DNS, refused connection, TLS handshake, or the connection
    │   │   │                         broke before the whole body was out (safe to retry)
    │   │   ├── PoolTimeoutError      never sent: no free connection in time (safe to retry)
    │   │   └── ReadError             the whole body was sent, but the answer was lost or too slow (ambiguous)
    │   ├── ResponseError             the server answered badly (oversized, malformed, redirected, odd status)
    │   │   └── ImageTooLargeError    an image download went past its ``max_bytes``
    │   ├── ForeignImageURLError      an image URL that is not on the configured Jumio host (never fetched)
    │   ├── APIError                  the server answered with an error status; ``.status_code``, ``.body``,
    │   │   │                         ``.tracking_id``
    │   │   ├── BadRequestError       400
    │   │   ├── AuthenticationError   401
    │   │   ├── ForbiddenError        403 (bad credentials, missing or suspicious headers)
    │   │   ├── NotFoundError         404
    │   │   ├── RateLimitedError      429; ``.retry_after`` seconds
    │   │   └── ServerError           5xx (a 503 with Retry-After is a refusal; other 5xx are ambiguous)
    │   ├── DeadlineExceeded          the overall deadline of the retry policy ran out
    │   └── RetryBudgetExhausted      the client-wide retry budget is spent; the last failure is ``__cause__``
    └── SubmissionOutcomeUnknown      performNetverify may or may not have created a (billed) scan; reconcile
                                      with ``.merchant_id_scan_reference`` before sending it again

    NetverifyWarning (UserWarning)    something allowed but probably not what you want
    └── PreflightWarning              an image that Jumio accepts but may read badly

No message, ``repr`` or attribute of these exceptions carries an API secret, image bytes or personal data, and
none of them holds an HTTP request or response object (those carry the ``Authorization`` header and the body).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._enums import TextEnum

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BatchItemError",
    "BatchStoppedError",
    "CallbackOriginError",
    "CallbackParseError",
    "ConfigurationError",
    "ConnectError",
    "DeadlineExceeded",
    "FailureKind",
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


class FailureKind(TextEnum):
    """What a failure says about the request's effect at the server; decided once, where the failure happens.

    - ``NOT_SENT``: the server cannot have processed it (no connection, or the body never got out whole).
    - ``REFUSED``: the server answered that it did not process it and may take it later (429, 503 with
      Retry-After).
    - ``AMBIGUOUS``: the whole body was sent and no certain refusal came back: the server may have processed it
      (for performNetverify: a scan, billed, may exist).
    - ``PERMANENT``: refused in a way that repeats (400, 401, 403, ...); sending the same again fails again.
    """

    NOT_SENT = "not_sent"
    REFUSED = "refused"
    AMBIGUOUS = "ambiguous"
    PERMANENT = "permanent"


def failure_kind(error: BaseException) -> FailureKind:
    """The :class:`FailureKind` an error carries; anything that does not carry one may have been processed."""
    kind = getattr(error, "kind", None)
    return kind if isinstance(kind, FailureKind) else FailureKind.AMBIGUOUS


class NetverifyError(Exception):
    """Base class of every exception raised on purpose by netverify-async."""


class NetverifyWarning(UserWarning):
    """Something the API allows but that is probably not what the caller meant."""


class PreflightWarning(NetverifyWarning):
    """An image that will be accepted but may be read badly (alpha channel, CMYK, low resolution...)."""


class ConfigurationError(NetverifyError, ValueError):
    """A client setting is missing or invalid (credentials, User-Agent, region, base URL, TLS options)."""

    kind = FailureKind.NOT_SENT


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

    kind = FailureKind.NOT_SENT

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

    kind = FailureKind.NOT_SENT

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

    ``kind`` is the :class:`FailureKind` decided where the failure happened. ``safe_to_retry`` is True when the
    server certainly did not process the request (every kind but ``AMBIGUOUS``), so sending it again cannot create
    a second scan. ``operation`` names the API call; ``merchant_id_scan_reference`` is set for submissions.
    """

    #: The kind of a failure of this class when the raiser does not say otherwise.
    default_kind = FailureKind.AMBIGUOUS

    def __init__(
        self,
        message: str,
        *,
        kind: FailureKind | None = None,
        operation: str | None = None,
        merchant_id_scan_reference: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind if kind is not None else self.default_kind
        self.operation = operation
        self.merchant_id_scan_reference = merchant_id_scan_reference
        self.attempts = attempts

    @property
    def safe_to_retry(self) -> bool:
        """True when the server certainly did not process the request."""
        return self.kind is not FailureKind.AMBIGUOUS


class TransportError(RequestError):
    """No usable HTTP answer came back."""


class ConnectError(TransportError):
    """The request never got out whole: DNS failure, refused connection, connect timeout, TLS handshake failure,
    or a connection that broke before the last byte of the body was written."""

    default_kind = FailureKind.NOT_SENT


class PoolTimeoutError(TransportError):
    """The request never left: no connection became free in time."""

    default_kind = FailureKind.NOT_SENT


class ReadError(TransportError):
    """The whole request was sent but the answer was lost (timeout or dropped connection): outcome unknown."""


class ResponseError(RequestError):
    """The server's answer could not be used: too large, malformed, a redirect (never followed) or a status that
    says nothing certain. Ambiguous unless ``kind`` says otherwise."""

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
    """429: the account's rate limit was hit.

    ``retry_after`` is the server's requested wait in seconds, when it gave one. The request was not processed,
    so it is safe to send again after the wait.
    """

    default_kind = FailureKind.REFUSED

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed. A 503 with ``Retry-After`` is a refusal (``kind`` REFUSED, safe to retry); any
    other 5xx after a complete submission is ambiguous. ``retry_after`` is the server's requested wait, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class DeadlineExceeded(RequestError):
    """The retry policy's overall deadline ran out before an answer came. ``kind`` is that of the last failed
    attempt (``NOT_SENT`` when no attempt was made)."""

    default_kind = FailureKind.NOT_SENT


class RetryBudgetExhausted(RequestError):
    """The client-wide retry budget is spent, so this failure was not retried (see ``__cause__``, whose ``kind``
    this error carries)."""


class SubmissionOutcomeUnknown(NetverifyError):
    """performNetverify may have created a scan (a billed transaction) but no answer came back.

    The request was not resent, because resending could create a duplicate. Reconcile with
    ``merchant_id_scan_reference`` (the Customer Portal, the callback, or your own records) before deciding to
    submit again. ``__cause__`` is the failure that made the outcome unknown.
    """

    #: Always ``AMBIGUOUS``: a scan may exist.
    kind = FailureKind.AMBIGUOUS
    safe_to_retry = False

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

    kind = FailureKind.NOT_SENT


class BatchItemError(NetverifyError):
    """An unexpected exception while a batch handled one item; ``__cause__`` is the original exception.

    The batch reports it as that item's outcome and goes on with the others. ``merchant_id_scan_reference``
    names the item (None when the item was not a request); ``stage`` is ``"prepare"`` or ``"upload"``.
    """

    def __init__(self, message: str, *, merchant_id_scan_reference: str | None, stage: str) -> None:
        super().__init__(message)
        self.merchant_id_scan_reference = merchant_id_scan_reference
        self.stage = stage
        #: nothing is sent while preparing; an unexpected failure during the upload may follow a sent body
        self.kind = FailureKind.NOT_SENT if stage == "prepare" else FailureKind.AMBIGUOUS


class BatchStoppedError(NetverifyError):
    """A batch stopped before it was done: after repeated authentication refusals (401/403 that every item would
    get too), or it was cancelled before an item's body was sent. Nothing it names was processed: items that
    were not sent are sent by the next run of the same batch (with a journal)."""

    kind = FailureKind.NOT_SENT
