"""netverify-async: an asyncio client for Jumio's ID Verification API (performNetverify v2).

The public API is what ``__all__`` lists; everything else is private.
"""

from __future__ import annotations

import logging as _stdlib_logging
from typing import TYPE_CHECKING

from ._client import ClientStats as ClientStats
from ._client import NetverifyClient as NetverifyClient
from ._client import Region as Region
from ._errors import APIError as APIError
from ._errors import AuthenticationError as AuthenticationError
from ._errors import BadRequestError as BadRequestError
from ._errors import BatchItemError as BatchItemError
from ._errors import BatchStoppedError as BatchStoppedError
from ._errors import CallbackOriginError as CallbackOriginError
from ._errors import CallbackParseError as CallbackParseError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import ConnectError as ConnectError
from ._errors import DeadlineExceeded as DeadlineExceeded
from ._errors import FailureKind as FailureKind
from ._errors import ForbiddenError as ForbiddenError
from ._errors import JournalError as JournalError
from ._errors import NetverifyError as NetverifyError
from ._errors import NetverifyWarning as NetverifyWarning
from ._errors import NotFoundError as NotFoundError
from ._errors import PoolTimeoutError as PoolTimeoutError
from ._errors import PreflightError as PreflightError
from ._errors import PreflightWarning as PreflightWarning
from ._errors import RateLimitedError as RateLimitedError
from ._errors import RateLimiterError as RateLimiterError
from ._errors import ReadError as ReadError
from ._errors import RequestError as RequestError
from ._errors import RequestValidationError as RequestValidationError
from ._errors import ResponseError as ResponseError
from ._errors import RetryBudgetExhausted as RetryBudgetExhausted
from ._errors import ServerError as ServerError
from ._errors import SubmissionOutcomeUnknown as SubmissionOutcomeUnknown
from ._errors import TransportError as TransportError
from ._errors import ValidationIssue as ValidationIssue
from ._events import AttemptFinished as AttemptFinished
from ._events import AttemptStarted as AttemptStarted
from ._events import CallbackHandled as CallbackHandled
from ._events import CallFinished as CallFinished
from ._events import CallOutcome as CallOutcome
from ._events import CallStarted as CallStarted
from ._events import Event as Event
from ._events import EventHook as EventHook
from ._events import JournalTransition as JournalTransition
from ._events import LimiterWaited as LimiterWaited
from ._events import PreflightRejected as PreflightRejected
from ._events import RetryScheduled as RetryScheduled
from ._logging import configure_from_environment as _configure_logging_from_environment
from ._models import CallbackGranularity as CallbackGranularity
from ._models import Consent as Consent
from ._models import ConsentObtained as ConsentObtained
from ._models import EnabledField as EnabledField
from ._models import IdType as IdType
from ._models import Image as Image
from ._models import MimeType as MimeType
from ._models import NetverifyRequest as NetverifyRequest
from ._models import ScanReceipt as ScanReceipt
from ._models import UserConsent as UserConsent
from ._models import UserLocation as UserLocation
from ._retry import RetryEvent as RetryEvent
from ._retry import RetryPolicy as RetryPolicy

# the application decides where records go; NETVERIFY_LOG=debug (or info...) sends them to stderr
_stdlib_logging.getLogger(__name__).addHandler(_stdlib_logging.NullHandler())
_configure_logging_from_environment()

if TYPE_CHECKING:  # the lazily imported names, for type checkers
    from ._batch import Batch as Batch
    from ._batch import BatchOutcome as BatchOutcome
    from ._batch import BatchProgress as BatchProgress
    from ._batch import BatchStatus as BatchStatus
    from ._batch import BatchSummary as BatchSummary
    from ._batch import OutcomeStatus as OutcomeStatus
    from ._batch import check_unique_references as check_unique_references
    from ._enums import ImageRole as ImageRole
    from ._exchange import ForeignImageURLError as ForeignImageURLError
    from ._exchange import ImageTooLargeError as ImageTooLargeError
    from ._idtypes import AcceptedIdTypes as AcceptedIdTypes
    from ._idtypes import AcquisitionConfig as AcquisitionConfig
    from ._idtypes import CountryIdTypes as CountryIdTypes
    from ._idtypes import IdTypeCatalog as IdTypeCatalog
    from ._idtypes import IdTypeNotAcceptedError as IdTypeNotAcceptedError
    from ._idtypes import IdTypeOption as IdTypeOption
    from ._idtypes import SupportedIdTypes as SupportedIdTypes
    from ._images import ImageStream as ImageStream
    from ._journal import CallbackEffect as CallbackEffect
    from ._journal import CallbackJournal as CallbackJournal
    from ._journal import CallbackReconciliation as CallbackReconciliation
    from ._journal import Journal as Journal
    from ._journal import JournalEntry as JournalEntry
    from ._journal import JournalScan as JournalScan
    from ._journal import JournalState as JournalState
    from ._journal import ScanResult as ScanResult
    from ._journal import SqliteJournal as SqliteJournal
    from ._preflight import PreflightIssue as PreflightIssue
    from ._preflight import PreflightReport as PreflightReport
    from ._preflight import changed_images as changed_images
    from ._preflight import check_image_sync as check_image_sync
    from ._preflight import preflight as preflight
    from ._preflight import preflight_request as preflight_request
    from ._ratelimit import AdaptiveLimiter as AdaptiveLimiter
    from ._ratelimit import RateLimiter as RateLimiter
    from ._ratelimit import RateWindow as RateWindow
    from ._ratelimit import SlidingWindowLimiter as SlidingWindowLimiter
    from ._ratelimit import UnlimitedLimiter as UnlimitedLimiter
    from ._ratelimit import make_limiter as make_limiter
    from ._ratelimit import parse_rate as parse_rate
    from ._results_wait import VerificationResult as VerificationResult
    from ._results_wait import WaitForResults as WaitForResults
    from ._results_wait import wait_for_results as wait_for_results
    from ._retrieval import DownloadedImage as DownloadedImage
    from ._retrieval import ScanDetails as ScanDetails
    from ._retrieval import ScanDocumentData as ScanDocumentData
    from ._retrieval import ScanImage as ScanImage
    from ._retrieval import ScanImages as ScanImages
    from ._retrieval import ScanSource as ScanSource
    from ._retrieval import ScanState as ScanState
    from ._retrieval import ScanStatus as ScanStatus
    from ._retrieval import ScanTransactionData as ScanTransactionData
    from ._retrieval import ScanVerificationData as ScanVerificationData
    from ._retrieval import VerificationStatus as VerificationStatus
    from ._worker import LeasingJournal as LeasingJournal
    from ._worker import WorkerStats as WorkerStats
    from ._worker import manifest_row_payload as manifest_row_payload
    from ._worker import process_one as process_one
    from ._worker import request_from_payload as request_from_payload
    from ._worker import run_worker as run_worker
    from .callbacks import CallbackOriginVerifier as CallbackOriginVerifier
    from .callbacks import NetverifyCallback as NetverifyCallback
    from .callbacks import parse_callback as parse_callback

__version__ = "0.1.0"

#: Public names whose modules are imported on first use, to keep ``import netverify_async`` fast.
_LAZY = {
    "ImageRole": "._enums",
    "CallbackOriginVerifier": ".callbacks",
    "NetverifyCallback": ".callbacks",
    "parse_callback": ".callbacks",
    "ScanDetails": "._retrieval",
    "ScanSource": "._retrieval",
    "ScanState": "._retrieval",
    "ScanStatus": "._retrieval",
    "VerificationStatus": "._retrieval",
    "DownloadedImage": "._retrieval",
    "ScanDocumentData": "._retrieval",
    "ScanImage": "._retrieval",
    "ScanImages": "._retrieval",
    "ScanTransactionData": "._retrieval",
    "ScanVerificationData": "._retrieval",
    "ImageStream": "._images",
    "ForeignImageURLError": "._exchange",
    "ImageTooLargeError": "._exchange",
    "AcceptedIdTypes": "._idtypes",
    "AcquisitionConfig": "._idtypes",
    "CountryIdTypes": "._idtypes",
    "IdTypeCatalog": "._idtypes",
    "IdTypeNotAcceptedError": "._idtypes",
    "IdTypeOption": "._idtypes",
    "SupportedIdTypes": "._idtypes",
    "PreflightIssue": "._preflight",
    "PreflightReport": "._preflight",
    "preflight": "._preflight",
    "preflight_request": "._preflight",
    "check_image_sync": "._preflight",
    "changed_images": "._preflight",
    "BatchOutcome": "._batch",
    "BatchProgress": "._batch",
    "BatchSummary": "._batch",
    "OutcomeStatus": "._batch",
    "SqliteJournal": "._journal",
    "Batch": "._batch",
    "BatchStatus": "._batch",
    "check_unique_references": "._batch",
    "Journal": "._journal",
    "CallbackEffect": "._journal",
    "CallbackJournal": "._journal",
    "CallbackReconciliation": "._journal",
    "JournalScan": "._journal",
    "ScanResult": "._journal",
    "JournalEntry": "._journal",
    "JournalState": "._journal",
    "VerificationResult": "._results_wait",
    "WaitForResults": "._results_wait",
    "wait_for_results": "._results_wait",
    "AdaptiveLimiter": "._ratelimit",
    "RateLimiter": "._ratelimit",
    "SlidingWindowLimiter": "._ratelimit",
    "UnlimitedLimiter": "._ratelimit",
    "parse_rate": "._ratelimit",
    "LeasingJournal": "._worker",
    "WorkerStats": "._worker",
    "manifest_row_payload": "._worker",
    "process_one": "._worker",
    "request_from_payload": "._worker",
    "run_worker": "._worker",
    "make_limiter": "._ratelimit",
    "RateWindow": "._ratelimit",
}


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = _published(value)
    return value


def _published(value: object) -> object:
    """``value`` with ``__module__`` set to the package, so reprs, docs and tracebacks show the public path.

    The attrs classes resolve their annotations when their module is imported, before this runs.
    """
    module = getattr(value, "__module__", None)
    if isinstance(module, str) and module.startswith(__name__ + "._"):
        try:
            value.__module__ = __name__
        except (AttributeError, TypeError):  # pragma: no cover - an object that does not allow it
            pass
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "BatchItemError",
    "BatchStoppedError",
    "RateLimiterError",
    *_LAZY,
    "AttemptFinished",
    "AttemptStarted",
    "CallFinished",
    "CallOutcome",
    "CallStarted",
    "CallbackHandled",
    "Event",
    "EventHook",
    "JournalTransition",
    "LimiterWaited",
    "PreflightRejected",
    "RetryScheduled",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "CallbackGranularity",
    "CallbackOriginError",
    "CallbackParseError",
    "ClientStats",
    "ConfigurationError",
    "ConnectError",
    "Consent",
    "ConsentObtained",
    "DeadlineExceeded",
    "EnabledField",
    "FailureKind",
    "ForbiddenError",
    "IdType",
    "Image",
    "JournalError",
    "MimeType",
    "NetverifyClient",
    "NetverifyError",
    "NetverifyRequest",
    "NetverifyWarning",
    "NotFoundError",
    "PoolTimeoutError",
    "PreflightError",
    "PreflightWarning",
    "RateLimitedError",
    "ReadError",
    "Region",
    "RequestError",
    "RequestValidationError",
    "ResponseError",
    "RetryBudgetExhausted",
    "RetryEvent",
    "RetryPolicy",
    "ScanReceipt",
    "ServerError",
    "SubmissionOutcomeUnknown",
    "TransportError",
    "UserConsent",
    "UserLocation",
    "ValidationIssue",
    "__version__",
]

for _name in __all__:
    if _name in globals():
        _published(globals()[_name])
del _name
