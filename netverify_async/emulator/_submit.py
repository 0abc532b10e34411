"""Handling of one performNetverify body: parse, validate, check the images, record the scan.

:func:`SubmissionHandler.handle` is pure computation (no I/O), so the benchmark can time it against a bare
``json.loads`` of the same body. Validation is the library's own:
:func:`netverify_async._wire.request_from_wire` for the fields and
:func:`netverify_async._preflight.check_image_sync` (header only) for each image.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from .._errors import RequestValidationError, ValidationIssue
from ._outcomes import choose_outcome
from ._state import EmulatorState, Scan, format_timestamp
from ._urls import is_loopback_http_url

__all__ = ["SubmissionHandler", "SubmissionResult", "b64decode_strict", "error_body"]


def _strict_decoder() -> Callable[[str], bytes]:
    """The fastest strict base64 decoder available: pybase64 (SIMD, about 1 ms for 15 MB) or the stdlib's."""
    try:
        import pybase64  # type: ignore[import-not-found, unused-ignore]  # optional speed-up
    except ImportError:  # pragma: no cover - pybase64 is part of the emulator extra
        if sys.version_info >= (3, 11):
            return functools.partial(binascii.a2b_base64, strict_mode=True)
        return functools.partial(base64.b64decode, validate=True)  # pragma: no cover - Python 3.10
    return functools.partial(pybase64.b64decode, validate=True)


_decode = _strict_decoder()


def b64decode_strict(text: str) -> bytes:
    """Standard base64 with correct padding and no whitespace; ValueError otherwise."""
    try:
        return _decode(text)
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        raise ValueError("not strict base64") from exc


Role = Literal["front", "back", "face"]
#: Image fields of the request, with the preflight role of each.
IMAGE_FIELDS: tuple[tuple[str, Role], ...] = (
    ("frontsideImage", "front"),
    ("backsideImage", "back"),
    ("faceImage", "face"),
)
_MIME_TYPES = frozenset({"image/jpeg", "image/png"})
#: The type Jumio assumes for an image sent without ``<image>MimeType``.
_DEFAULT_MIME_TYPE = "image/jpeg"
# Stands in for an image in what the field parser sees (one byte, valid strict base64).
_STAND_IN = "AA=="
# Request values that the synthetic result echoes back as if read from the document.
_ECHOED_FIELDS = ("firstName", "lastName", "dob", "expiry", "number", "personalNumber", "usState")


@attrs.frozen
class SubmissionResult:
    """The answer to one submission: status, JSON body, and the scan when one was created."""

    status: int
    body: bytes
    scan: Scan | None = None


def error_body(status: int, message: str, request_uri: str, **extra: Any) -> bytes:
    """A JSON error body shaped like Jumio's: ``{"httpStatus": "404", "message": ..., "requestURI": ...}``."""
    body: dict[str, Any] = {"httpStatus": str(status), "message": message, "requestURI": request_uri}
    body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode()


def _bad_request(issues: list[ValidationIssue], request_uri: str) -> SubmissionResult:
    count = len(issues)
    errors = [{"field": i.path, "code": i.code, "message": i.message} for i in issues]
    message = f"Bad Request: {count} invalid field{'s' if count != 1 else ''}"
    return SubmissionResult(400, error_body(400, message, request_uri, errors=errors))


class SubmissionHandler:
    """Turns a performNetverify body into a scan (200) or a list of violations (400)."""

    def __init__(self, state: EmulatorState) -> None:
        from .._preflight import check_image_sync
        from .._wire import request_from_wire

        self._state = state
        self._config = state.config
        self._request_from_wire = request_from_wire
        self._check_image = check_image_sync

    def handle(self, body: bytes, *, client_ip: str, base_url: str, request_uri: str) -> SubmissionResult:
        """Validate ``body`` and, when it is acceptable, record a new scan and return the 200 answer."""
        try:
            data = json.loads(body)
        except ValueError:  # includes UnicodeDecodeError
            issue = ValidationIssue("body", "invalid_json", "the body is not valid UTF-8 JSON")
            return _bad_request([issue], request_uri)
        if not isinstance(data, dict):
            return _bad_request([ValidationIssue("body", "type", "must be a JSON object")], request_uri)

        # Images are decoded here, with the fastest strict base64 decoder available, and the field parser sees
        # a one-byte stand-in instead: it only needs *an* image, and the image itself is judged by preflight.
        # Base64 that does not decode is left in place for the field parser to report in its own words.
        wire = dict(data)
        images: dict[str, tuple[bytes, str | None]] = {}
        for field, _role in IMAGE_FIELDS:
            text = data.get(field)
            if not isinstance(text, str) or not text:
                continue
            try:
                raw = b64decode_strict(text)
            except ValueError:
                continue
            mime = data.get(f"{field}MimeType", _DEFAULT_MIME_TYPE)  # Jumio reads an absent type as JPEG
            images[field] = (raw, mime if mime in _MIME_TYPES else None)
            wire[field] = _STAND_IN

        callback_url = data.get("callbackUrl")
        if not isinstance(callback_url, str):
            callback_url = None
        elif self._config.allow_http_callbacks and is_loopback_http_url(callback_url):
            # The library's validation insists on Jumio's https-only rule; the emulator waives it for loopback
            # receivers when allowed to, by validating the rest of the request without the URL.
            del wire["callbackUrl"]

        issues: list[ValidationIssue] = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._request_from_wire(wire)
        except RequestValidationError as exc:
            issues.extend(exc.errors)
        if self._config.check_images:
            roles = dict(IMAGE_FIELDS)
            for field, (raw, mime) in images.items():
                report = self._check_image(raw, mime, role=roles[field], integrity="header")
                issues.extend(ValidationIssue(field, e.code, e.message) for e in report.errors)
        if issues:
            return _bad_request(issues, request_uri)
        scan = self._new_scan(data, images, callback_url, client_ip=client_ip, base_url=base_url)
        self._state.add_scan(scan)
        answer = f'{{"timestamp":"{scan.created_timestamp}","jumioIdScanReference":"{scan.reference}"}}'
        return SubmissionResult(200, answer.encode(), scan)

    def _new_scan(
        self,
        data: Mapping[str, Any],
        images: Mapping[str, tuple[bytes, str | None]],
        callback_url: str | None,
        *,
        client_ip: str,
        base_url: str,
    ) -> Scan:
        now = time.monotonic()
        merchant_reference = data["merchantIdScanReference"]
        customer_id = data.get("customerId")
        enabled_text = data.get("enabledFields")
        enabled = (
            None if enabled_text is None else tuple(f.strip() for f in enabled_text.split(",") if f.strip())
        )
        has_face = "faceImage" in images
        roles = frozenset(role for field, role in IMAGE_FIELDS if field in images)
        stored: dict[str, tuple[bytes, str]] = {}
        if self._config.store_images:
            for field, role in IMAGE_FIELDS:
                if field in images:
                    raw, mime = images[field]
                    stored[role] = (raw, mime or "image/jpeg")
        return Scan(
            reference=str(uuid.uuid4()),
            merchant_reference=merchant_reference,
            customer_id=customer_id,
            reporting_criteria=data.get("merchantReportingCriteria"),
            country=data["country"],
            id_type=data["idType"],
            enabled_fields=enabled,
            wire_fields={k: data[k] for k in _ECHOED_FIELDS if k in data},
            face_match=has_face and (enabled is None or "idFaceMatch" in enabled),
            callback_url=callback_url,
            on_all_steps=data.get("callbackGranularity") == "onAllSteps",
            outcome=choose_outcome(merchant_reference, customer_id, self._state.default_outcome),
            created_timestamp=format_timestamp(),
            created_monotonic=now,
            ready_monotonic=now + self._config.processing_delay,
            client_ip=client_ip,
            base_url=base_url,
            image_roles=roles,
            images=stored,
            liveness_count=self._config.liveness_images if has_face else 0,
        )
