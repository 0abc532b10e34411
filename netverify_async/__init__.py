"""netverify-async: an asyncio client for Jumio's ID Verification API (performNetverify v2).

The public API is what ``__all__`` lists; everything else is private.
"""

from __future__ import annotations

from ._client import ClientStats as ClientStats
from ._client import NetverifyClient as NetverifyClient
from ._client import Region as Region
from ._errors import APIError as APIError
from ._errors import AuthenticationError as AuthenticationError
from ._errors import BadRequestError as BadRequestError
from ._errors import CallbackOriginError as CallbackOriginError
from ._errors import CallbackParseError as CallbackParseError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import ConnectError as ConnectError
from ._errors import DeadlineExceeded as DeadlineExceeded
from ._errors import ForbiddenError as ForbiddenError
from ._errors import JournalError as JournalError
from ._errors import NetverifyError as NetverifyError
from ._errors import NetverifyWarning as NetverifyWarning
from ._errors import NotFoundError as NotFoundError
from ._errors import PoolTimeoutError as PoolTimeoutError
from ._errors import PreflightError as PreflightError
from ._errors import PreflightWarning as PreflightWarning
from ._errors import RateLimitedError as RateLimitedError
from ._errors import ReadError as ReadError
from ._errors import RequestError as RequestError
from ._errors import RequestValidationError as RequestValidationError
from ._errors import ResponseError as ResponseError
from ._errors import RetryBudgetExhausted as RetryBudgetExhausted
from ._errors import ServerError as ServerError
from ._errors import SubmissionOutcomeUnknown as SubmissionOutcomeUnknown
from ._errors import TransportError as TransportError
from ._errors import ValidationIssue as ValidationIssue
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
from ._retry import FailureKind as FailureKind
from ._retry import RetryEvent as RetryEvent
from ._retry import RetryPolicy as RetryPolicy

__version__ = "0.1.0"

__all__ = [
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
