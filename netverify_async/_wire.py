"""The performNetverify body on the wire: the fast encoder the client sends with, and the named entry points.

The wire format itself (keys, scalar formats, the strict reading of a body) is written once, in
:mod:`netverify_async._convert`, from the models' field metadata; :class:`~netverify_async.NetverifyRequest`
and :class:`~netverify_async.ScanReceipt` expose it as ``to_wire()`` / ``from_wire()``. This module adds
:func:`encode_request_body`, which splices the base64 images into the JSON text instead of building them as
Python strings, and keeps the functional names other modules import.
"""

from __future__ import annotations

import binascii
import functools
import json
from collections.abc import Callable
from typing import Any

from ._convert import format_date as format_date
from ._convert import format_timestamp as format_timestamp
from ._convert import parse_date as parse_date
from ._convert import parse_timestamp as parse_timestamp
from ._convert import request_metadata
from ._convert import request_to_wire as request_to_wire
from ._enums import ImageRole, MimeType
from ._errors import RequestValidationError, ValidationIssue
from ._models import NetverifyRequest, ScanReceipt
from ._parts import sniff_mime_type

__all__ = [
    "encode_request_body",
    "format_date",
    "format_timestamp",
    "parse_date",
    "parse_timestamp",
    "receipt_from_wire",
    "receipt_to_wire",
    "request_from_wire",
    "request_to_wire",
]

_b64encode: Callable[[bytes], bytes]
try:  # SIMD base64 that releases the GIL: ~3 ms for 10 MB, while binascii holds the GIL for ~25 ms
    from pybase64 import b64encode as _b64encode
except ImportError:  # pragma: no cover - pybase64 is a dependency; keep working without it
    _b64encode = functools.partial(binascii.b2a_base64, newline=False)


def encode_request_body(req: NetverifyRequest) -> bytes:
    """The compact JSON body as bytes, ready to POST. CPU-bound: run it in a worker thread.

    Each image is base64-encoded once, straight to bytes, and spliced into the JSON text (base64 needs no JSON
    escaping), so a 15 MB image costs one base64 buffer and one copy into the final body.
    """
    _check_declared_types(req)
    head = json.dumps(request_metadata(req), separators=(",", ":")).encode("ascii")
    parts: list[bytes] = [head[:-1]]
    need_comma = len(head) > 2
    for role in ImageRole:
        image = getattr(req, role.attribute)
        if image is None:
            continue
        parts.append(b',"' if need_comma else b'"')
        parts.append(role.wire_key.encode("ascii"))
        parts.append(b'":"')
        parts.append(_b64encode(image.data))
        parts.append(b'"')
        need_comma = True
    parts.append(b"}")
    return b"".join(parts)


def _check_declared_types(req: NetverifyRequest) -> None:
    """Refuse to send an image whose bytes are not what its declared type says. Jumio reads an image without a
    declared type as ``image/jpeg``, so the declared or defaulted type must match the bytes (preflight checks the
    same, but may be switched off)."""
    issues = []
    for role in ImageRole:
        image = getattr(req, role.attribute)
        if image is None:
            continue
        declared = image.mime_type or MimeType.JPEG
        actual = sniff_mime_type(image.data)
        if actual is None:
            issues.append(
                ValidationIssue(role.wire_key, "unsupported_format", "must be a JPEG or PNG image to be sent")
            )
        elif actual is not declared:
            issues.append(
                ValidationIssue(
                    role.wire_key + "MimeType",
                    "mime_mismatch",
                    f"declares {declared.value} but the bytes are {actual.value}",
                )
            )
    if issues:
        raise RequestValidationError(issues)


def request_from_wire(body: Any) -> NetverifyRequest:
    """:meth:`NetverifyRequest.from_wire <netverify_async.NetverifyRequest.from_wire>`."""
    return NetverifyRequest.from_wire(body)


def receipt_to_wire(receipt: ScanReceipt) -> dict[str, Any]:
    """The performNetverify response body (``timestamp``, ``jumioIdScanReference``)."""
    return receipt.to_wire()


def receipt_from_wire(body: Any) -> ScanReceipt:
    """:meth:`ScanReceipt.from_wire <netverify_async.ScanReceipt.from_wire>`."""
    return ScanReceipt.from_wire(body)
