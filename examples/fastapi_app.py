"""A small ID verification service: upload a photo of an ID, get the result back through Jumio's callback.

    POST /verify                  multipart form: ``photo`` (the ID's front side), ``country``, ``id_type``
                                  -> 202 {"scan_reference": ..., "merchant_reference": ...}
    GET  /verify/{scan_reference} the outcome once the callback came; until then the scan's state
    POST /netverify/callback      where Jumio (or the emulator) sends the result

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
import uuid
from typing import Annotated, Any

from fastapi import FastAPI, Form, HTTPException, Path, UploadFile

from netverify_async import (
    Image,
    NetverifyRequest,
    NotFoundError,
    PreflightError,
    RateLimitedError,
    RequestError,
    RequestValidationError,
    SubmissionOutcomeUnknown,
)
from netverify_async.callbacks import CallbackOriginVerifier, NetverifyCallback
from netverify_async.fastapi import NetverifyClientDep, callback_router, netverify_lifespan

logger = logging.getLogger("verify_service")

#: Jumio refuses images over 15 MB; reading stops one byte after that.
MAX_UPLOAD_BYTES = 15_000_000

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


@app.post("/verify", status_code=202)
async def verify(
    client: NetverifyClientDep,
    photo: UploadFile,
    country: Annotated[str, Form(min_length=2, max_length=3)] = "USA",
    id_type: Annotated[str, Form()] = "PASSPORT",
) -> dict[str, str]:
    """Submit the uploaded photo; the result arrives later at /netverify/callback."""
    data = await photo.read(MAX_UPLOAD_BYTES + 1)  # a spooled file: read in a worker thread when large
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the photo is larger than {MAX_UPLOAD_BYTES} bytes")
    merchant_reference = f"verify-{uuid.uuid4()}"
    try:
        request = NetverifyRequest(
            merchant_id_scan_reference=merchant_reference,
            frontside_image=Image.from_bytes(data),
            country=country,
            id_type=id_type,
            callback_url=os.environ.get("NETVERIFY_CALLBACK_URL") or None,
        )
        # Preflight decodes the image in a worker thread and the body is encoded off the event loop.
        receipt = await client.perform_netverify(request)
    except RequestValidationError as exc:
        raise HTTPException(
            422, [{"field": e.path, "code": e.code, "message": e.message} for e in exc.errors]
        ) from None
    except PreflightError as exc:
        issues = exc.report.errors if exc.report is not None else ()
        raise HTTPException(
            422, [{"field": "photo", "code": i.code, "message": i.message} for i in issues]
        ) from None
    except RateLimitedError as exc:
        retry_after = f"{exc.retry_after:.0f}" if exc.retry_after else "5"
        raise HTTPException(503, "busy, try again later", headers={"Retry-After": retry_after}) from None
    except SubmissionOutcomeUnknown:
        # A scan may exist; a real service would reconcile by merchant reference before submitting again.
        logger.warning("submission %s: outcome unknown", merchant_reference)
        raise HTTPException(502, "the verification service did not confirm the submission") from None
    except RequestError as exc:
        raise HTTPException(502, f"the verification service failed ({type(exc).__name__})") from None
    return {"scan_reference": receipt.scan_reference, "merchant_reference": merchant_reference}


@app.get("/verify/{scan_reference}")
async def verification_result(
    scan_reference: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,36}$")],
    client: NetverifyClientDep,
) -> dict[str, Any]:
    """The stored outcome. Without one, ask Jumio: a scan that finished but whose callback was lost is
    fetched from the retrieval API and stored, so callbacks that never arrive cost nothing but a poll."""
    if scan_reference not in RESULTS:
        try:
            status = await client.scan_status(scan_reference)
            if not status.is_final:
                return {"state": getattr(status.status, "value", status.status)}
            details = await client.scan_details(scan_reference)
        except NotFoundError:
            raise HTTPException(404, "unknown scan reference") from None
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
