"""``netverify-async submit``: one verification from image files."""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from typing import Any

import anyio

from .._constants import RETRIEVAL_POLL_SCHEDULE_S
from .._models import (
    Consent,
    ConsentObtained,
    EnabledField,
    IdType,
    Image,
    NetverifyRequest,
    UserConsent,
    UserLocation,
)
from ._common import (
    EMULATOR_POLL_SCHEDULE_S,
    add_connection_arguments,
    build_client,
    enum_value,
    print_json,
    require_file,
)

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "submit",
        help="submit one verification from image files",
        description="Submit one ID verification (performNetverify) and print Jumio's scan reference. "
        "Credentials come from NETVERIFY_API_TOKEN / NETVERIFY_API_SECRET (or a prompt), never from flags.",
    )
    parser.add_argument("--front", required=True, metavar="FILE", help="image of the ID's front side")
    parser.add_argument("--back", metavar="FILE", help="image of the ID's back side")
    parser.add_argument("--face", metavar="FILE", help="image of the face (needed for face match)")
    parser.add_argument("--country", required=True, help="ISO 3166-1 alpha-3 country of the ID (or XKX)")
    parser.add_argument(
        "--id-type", required=True, choices=[t.value for t in IdType], help="type of the document"
    )
    parser.add_argument(
        "--reference", help="your merchantIdScanReference (default: a new UUID); no personal data"
    )
    parser.add_argument("--customer-id", help="your customer id (no personal data)")
    parser.add_argument("--callback-url", help="HTTPS URL Jumio calls with the result")
    parser.add_argument(
        "--enabled-fields",
        help="comma-separated fields to extract, e.g. idNumber,idFirstName,idFaceMatch "
        f"(known: {','.join(f.value for f in EnabledField)})",
    )
    parser.add_argument("--user-ip", help="end user's IP address (consent)")
    parser.add_argument("--user-country", help="end user's current country, alpha-3 (consent)")
    parser.add_argument("--user-state", help="end user's state, e.g. IL (consent; USA/CAN/AUS)")
    parser.add_argument(
        "--consent", choices=[c.value for c in ConsentObtained], help="whether the end user consented"
    )
    parser.add_argument(
        "--consent-at",
        help="when consent was obtained, YYYY-MM-DDThh:mm:ss.SSSZ (default: now when --consent yes)",
    )
    parser.add_argument(
        "--fix", action="store_true", help="normalise images Jumio would refuse when possible"
    )
    parser.add_argument(
        "--wait", action="store_true", help="poll the retrieval API until the result is ready"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_connection_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def build_request(args: argparse.Namespace) -> NetverifyRequest:
    """The request described by the command line (validated; raises RequestValidationError)."""
    from .._wire import parse_timestamp

    images = {
        name: Image.from_path(require_file(path, f"--{name}"))
        for name, path in (("front", args.front), ("back", args.back), ("face", args.face))
        if path
    }
    consent = None
    if args.user_ip or args.user_country or args.consent:
        obtained = None
        if args.consent:
            when = parse_timestamp(args.consent_at) if args.consent_at else None
            if when is None and args.consent == "yes":
                when = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
            obtained = Consent(obtained=args.consent, obtained_at=when)
        consent = UserConsent(
            user_ip=args.user_ip or "",
            user_location=UserLocation(country=(args.user_country or ""), state=args.user_state),
            consent=obtained,
        )
    enabled = None
    if args.enabled_fields:
        enabled = tuple(part.strip() for part in args.enabled_fields.split(",") if part.strip())
    return NetverifyRequest(
        merchant_id_scan_reference=args.reference or str(uuid.uuid4()),
        frontside_image=images["front"],
        backside_image=images.get("back"),
        face_image=images.get("face"),
        country=args.country,
        id_type=args.id_type,
        customer_id=args.customer_id,
        callback_url=args.callback_url,
        enabled_fields=enabled,
        user_consent=consent,
    )


async def _submit(args: argparse.Namespace) -> int:
    request = build_request(args)
    async with build_client(args, preflight_fix=args.fix) as client:
        receipt = await client.perform_netverify(request)
        result: dict[str, Any] = {
            "merchantIdScanReference": request.merchant_id_scan_reference,
            "scanReference": receipt.scan_reference,
            "timestamp": receipt.timestamp,
        }
        if not args.json:
            print(f"submitted {request.merchant_id_scan_reference}: scan reference {receipt.scan_reference}")
        if args.wait:
            # the emulator finishes in about a second; Jumio's own schedule starts at 40 s
            schedule = EMULATOR_POLL_SCHEDULE_S if args.emulator else RETRIEVAL_POLL_SCHEDULE_S
            details = await client.wait_for_result(receipt.scan_reference, schedule=schedule)
            result["verificationStatus"] = enum_value(details.verification_status)
            result["rejectReasonCodes"] = list(details.reject_reason_codes)
            if not args.json:
                codes = ", ".join(details.reject_reason_codes)
                print(
                    f"result: {result['verificationStatus']}"
                    + (f" (reject reasons: {codes})" if codes else "")
                )
    if args.json:
        print_json(result)
    return 0


def run(args: argparse.Namespace) -> int:
    return anyio.run(_submit, args)
