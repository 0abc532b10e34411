"""A small ID verification service: upload a photo of an ID, get the result back through Jumio's callback.

    POST /verify                  multipart form: ``photo`` (the ID's front side), ``country``, ``id_type``
                                  -> 202 {"scan_reference": ..., "merchant_reference": ...}
    GET  /verify/{scan_reference} the outcome once the callback came; until then the scan's state
    POST /netverify/callback      where Jumio (or the emulator) sends the result

Every error of the library is answered in one place (:func:`describe_failure`): 422 for data Jumio would
refuse (naming the form field), 404 for an unknown scan, 503 with ``Retry-After`` when nothing was processed
(Jumio unreachable, busy or rate limited: try again later), 502 when Jumio refused this service's credentials
or a submission's outcome is unknown (then with the merchant reference: do not resubmit, reconcile), 504 when
no answer came in time. Each failure is logged to the ``verify_service`` logger with its type, Jumio's reason
and tracking id (WARNING and ERROR reach stderr even when logging is not configured;
``logging.basicConfig(level=logging.INFO)`` shows the rest).

Configuration comes from the environment: ``NETVERIFY_API_TOKEN``, ``NETVERIFY_API_SECRET``,
``NETVERIFY_USER_AGENT`` and ``NETVERIFY_REGION`` or ``NETVERIFY_BASE_URL`` for the client;
``NETVERIFY_CALLBACK_URL`` (optional: the public https URL of ``/netverify/callback``, sent with each
request; otherwise the callback URL of the Customer Portal applies); ``CALLBACK_ALLOWED_IPS`` (optional,
comma-separated: replaces Jumio's address list, e.g. ``127.0.0.1,::1`` for the local emulator) and
``CALLBACK_TRUSTED_PROXIES`` (optional: your load balancer's addresses or networks).

Try it against the local emulator (needs ``pip install 'netverify-async[fastapi,emulator]'``)::

    python -m netverify_async.emulator --port 8001 --processing-delay 2 \\
        --allow-http-callbacks --callback-url-override http://127.0.0.1:8000/netverify/callback &
    NETVERIFY_API_TOKEN=emulator-api-token NETVERIFY_API_SECRET=emulator-api-secret \\
    NETVERIFY_USER_AGENT="Example Corp VerifyService/1.0" NETVERIFY_BASE_URL=http://127.0.0.1:8001 \\
    CALLBACK_ALLOWED_IPS=127.0.0.1,::1 uvicorn examples.fastapi_app:app --port 8000

    curl -F photo=@passport.jpg -F country=AUT -F id_type=PASSPORT http://127.0.0.1:8000/verify
    curl http://127.0.0.1:8000/verify/<scan_reference>
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from typing import Annotated, Any

from fastapi import FastAPI, Form, HTTPException, Path, Request, UploadFile
from fastapi.responses import JSONResponse

from netverify_async import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    FailureKind,
    ForbiddenError,
    Image,
    NetverifyError,
    NetverifyRequest,
    NotFoundError,
    PreflightError,
    ReadError,
    RequestError,
    RequestValidationError,
    SubmissionOutcomeUnknown,
)
from netverify_async.callbacks import CallbackOriginVerifier, NetverifyCallback
from netverify_async.fastapi import NetverifyClientDep, callback_router, netverify_lifespan

logger = logging.getLogger("verify_service")

#: Jumio refuses images over 15 MB; reading stops one byte after that.
MAX_UPLOAD_BYTES = 15_000_000
#: Seconds a caller is told to wait (Retry-After) when Jumio cannot be reached or is busy and gave no wait.
DEFAULT_RETRY_AFTER_S = 5

#: Finished verifications by scan reference. A real service keeps them in its database.
RESULTS: dict[str, dict[str, Any]] = {}


async def store_result(callback: NetverifyCallback) -> None:
    """Called after Jumio got its 200. Idempotent: a second callback for a scan overwrites the first."""
    if not callback.is_final:  # the "images received" step of callbackGranularity=onAllSteps
        return
    status = callback.verification_status
    RESULTS[callback.jumio_id_scan_reference] = {
        "merchant_reference": callback.merchant_id_scan_reference,
        "verification_status": getattr(status, "value", status),
        "approved": callback.is_approved,
        "reject_reasons": list(callback.reject_reason_codes),
    }
    # The scan reference and the status are not personal data; names, dates and numbers stay out of logs.
    logger.info("scan %s finished: %s", callback.jumio_id_scan_reference, getattr(status, "value", status))


def _addresses(variable: str) -> list[str]:
    return [part.strip() for part in os.environ.get(variable, "").split(",") if part.strip()]


verifier = CallbackOriginVerifier(
    _addresses("CALLBACK_ALLOWED_IPS") or None,  # None: Jumio's published addresses
    trusted_proxies=_addresses("CALLBACK_TRUSTED_PROXIES"),
)

app = FastAPI(title="ID verification service", lifespan=netverify_lifespan())
app.include_router(callback_router(store_result, verifier=verifier))


# -- errors: every typed error of the library becomes an answer with the right status, and a log line ---------

#: Request fields (wire names) -> the form fields of POST /verify they come from.
FORM_FIELDS = {"frontsideImage": "photo", "country": "country", "idType": "id_type"}
# The library's hints name its own options ("fix=True converts it to JPEG"); the end user cannot use them.
_LIBRARY_HINT = re.compile(r"\s*\([^()]*fix=True[^()]*\)")


def _for_end_users(message: str) -> str:
    return _LIBRARY_HINT.sub("", message)


def _retry_after(exc: NetverifyError) -> str:
    wait = getattr(exc, "retry_after", None)
    return str(max(1, round(wait))) if wait else str(DEFAULT_RETRY_AFTER_S)


def _server_reason(exc: NetverifyError) -> str:
    """What Jumio said (the ``message`` of its error body), when it is not already in the exception's text."""
    body = exc.body if isinstance(exc, APIError) else None
    message = body.get("message") if isinstance(body, dict) else None
    return f"; the server said: {message}" if isinstance(message, str) and message not in str(exc) else ""


def describe_failure(exc: NetverifyError) -> tuple[int, Any, dict[str, str], int]:
    """(status, detail, headers, log level) for a failure of the library, decided by its type and ``kind``.

    - the caller's data (validation, preflight, a scan that does not exist): 4xx, logged at INFO;
    - nothing was processed (no connection, 429, a 503 with Retry-After): 503 with ``Retry-After``, WARNING;
    - Jumio refused this service's credentials or headers (401, 403): 502, ERROR: an operator must act;
    - a submission whose outcome is unknown: 502 with the merchant reference, ERROR: a scan may exist, so it
      must be reconciled (callback, Customer Portal) before anyone submits it again;
    - any other failure (a lost answer, a 5xx, a malformed answer): 504 or 502, ERROR.
    """
    detail: Any
    if isinstance(exc, RequestValidationError):
        detail = [
            {"field": FORM_FIELDS.get(e.path, e.path), "code": e.code, "message": _for_end_users(e.message)}
            for e in exc.errors
        ]
        return 422, detail, {}, logging.INFO
    if isinstance(exc, PreflightError):
        issues = exc.report.errors if exc.report is not None else ()
        detail = [{"field": "photo", "code": i.code, "message": _for_end_users(i.message)} for i in issues]
        return 422, detail or [{"field": "photo", "code": "preflight", "message": str(exc)}], {}, logging.INFO
    if isinstance(exc, NotFoundError):
        return 404, "unknown scan reference", {}, logging.INFO
    if isinstance(exc, SubmissionOutcomeUnknown):
        detail = {
            "message": "the verification service did not confirm the submission; do not submit it again, "
            "its result may still arrive",
            "merchant_reference": exc.merchant_id_scan_reference,
        }
        return 502, detail, {}, logging.ERROR
    if isinstance(exc, (AuthenticationError, ForbiddenError)):
        return 502, "the verification service refused this service's request", {}, logging.ERROR
    if isinstance(exc, BadRequestError):
        return 422, "the verification service refused the data", {}, logging.WARNING
    if isinstance(exc, ConfigurationError):
        return 500, "the service is misconfigured", {}, logging.ERROR
    if getattr(exc, "kind", None) in (FailureKind.NOT_SENT, FailureKind.REFUSED):
        # nothing was processed: the same request may be sent again later (RateLimitedError is REFUSED)
        headers = {"Retry-After": _retry_after(exc)}
        return 503, "the verification service is unavailable or busy; try again later", headers, logging.WARNING
    if isinstance(exc, ReadError):
        return 504, "the verification service did not answer in time", {}, logging.ERROR
    if isinstance(exc, RequestError):
        return 502, "the verification service failed", {}, logging.ERROR
    return 500, "internal error", {}, logging.ERROR


@app.exception_handler(NetverifyError)
async def netverify_failure(request: Request, exc: Exception) -> JSONResponse:
    """Every library error raised by a route ends here (the callback router answers its own)."""
    assert isinstance(exc, NetverifyError)
    status, detail, headers, level = describe_failure(exc)
    # The library's messages carry no secret and no personal data: statuses, tracking ids, the API's host.
    logger.log(
        level,
        "%s %s -> %d: %s: %s%s",
        request.method,
        request.url.path,
        status,
        type(exc).__name__,
        exc,
        _server_reason(exc),
    )
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


# -- routes -----------------------------------------------------------------------------------------------------


@app.post("/verify", status_code=202)
async def verify(
    client: NetverifyClientDep,
    photo: UploadFile,
    country: Annotated[str, Form(min_length=2, max_length=3)] = "USA",
    id_type: Annotated[str, Form()] = "PASSPORT",
) -> dict[str, str]:
    """Submit the uploaded photo; the result arrives later at /netverify/callback. Failures: see
    :func:`describe_failure`."""
    data = await photo.read(MAX_UPLOAD_BYTES + 1)  # a spooled file: read in a worker thread when large
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the photo is larger than {MAX_UPLOAD_BYTES} bytes")
    merchant_reference = f"verify-{uuid.uuid4()}"
    request = NetverifyRequest(
        merchant_id_scan_reference=merchant_reference,
        frontside_image=Image.from_bytes(data),
        country=country,
        id_type=id_type,
        callback_url=os.environ.get("NETVERIFY_CALLBACK_URL") or None,
    )
    # Preflight decodes the image in a worker thread and the body is encoded off the event loop.
    receipt = await client.perform_netverify(request)
    logger.info("submitted %s: scan %s", merchant_reference, receipt.scan_reference)
    return {"scan_reference": receipt.scan_reference, "merchant_reference": merchant_reference}


@app.get("/verify/{scan_reference}")
async def verification_result(
    scan_reference: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,36}$")],
    client: NetverifyClientDep,
) -> dict[str, Any]:
    """The stored outcome. Without one, ask Jumio: a scan that finished but whose callback was lost is
    fetched from the retrieval API and stored, so callbacks that never arrive cost nothing but a poll."""
    if scan_reference not in RESULTS:
        status = await client.scan_status(scan_reference)
        if not status.is_final:
            return {"state": getattr(status.status, "value", status.status)}
        details = await client.scan_details(scan_reference)
        document_status = details.document.status if details.document else None
        transaction = details.transaction
        RESULTS.setdefault(
            scan_reference,
            {
                "merchant_reference": transaction.merchant_scan_reference if transaction else None,
                "verification_status": getattr(document_status, "value", document_status),
                "approved": details.is_approved,
                "reject_reasons": list(details.reject_reason_codes),
            },
        )
    return {"state": "FINISHED", **RESULTS[scan_reference]}
