"""The documented rules of a performNetverify request body, checked all at once.

:func:`request_issues` returns every broken rule as a :class:`~netverify_async.ValidationIssue` whose
``path`` is the wire path of the field (``userConsent.consent.obtainedAt``) and whose ``code`` is a stable
snake_case name. :func:`validate_request` raises :class:`~netverify_async.RequestValidationError` with all of
them, and emits a :class:`~netverify_async.NetverifyWarning` for requests that are allowed but probably not
what the caller meant.

Messages never repeat the offending value, so they are safe to log.

Decisions where the guide is silent or ambiguous:

* ``usState`` for ``VISA``: the guide only lists values for PASSPORT / ID_CARD and DRIVING_LICENSE. A visa
  is issued by a country, so VISA gets the PASSPORT / ID_CARD set (US state code, country name, alpha-2 or
  alpha-3 code, Kosovo / XK / XKX).
* ``userLocation.country`` also accepts ``XKX`` (Kosovo), which the API uses for ``country``; without it a
  user located in Kosovo could not be described at all.
* ``consent.obtainedAt`` may lie up to :data:`CONSENT_CLOCK_SKEW` in the future (clocks disagree a little).
* ``dob`` is "in the future" only when it is after today's date in the earliest time zone (UTC+14), so no
  real birthday is refused because of where the check runs.
* Empty strings are refused for every string field (use ``None`` to leave a field out); JSON ``null`` on the
  wire means the same as an absent key.
* ``merchantIdScanReference``, ``customerId`` and ``callbackUrl`` must not contain an e-mail address (the
  guide forbids personal data there).
* Every string field must be text that can go on the wire and into logs and journals unchanged: encodable as
  UTF-8 (``not_encodable``: no surrogate code points), without control characters (``control_character``:
  category Cc, so NUL, tab, CR, LF, DEL and C1) and without bidirectional formatting characters
  (``bidi_control``), which make a reference display differently from what it is. ``callbackUrl`` has
  stricter rules of its own (ASCII only, no controls).

Heavy data (pycountry's ISO 3166 databases) is loaded on first use only.

Why one module of over 600 lines: it is the table of documented rules, one checker per field, in the order of
the guide; each rule is a few lines, and their codes and messages live next to them.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import functools
import re
import unicodedata
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

from ._constants import CONSENT_MAX_AGE_DAYS, MAX_LENGTHS
from ._enums import CallbackGranularity, ConsentObtained, EnabledField, IdType, MimeType
from ._errors import NetverifyWarning, RequestValidationError, ValidationIssue
from ._imagerules import image_bytes_issue
from ._parts import Consent, Image, UserConsent, UserLocation

__all__ = [
    "ADDRESS_EXTRACTION_SUPPORT",
    "CONSENT_CLOCK_SKEW",
    "deferred_validation",
    "is_country_code",
    "normalize_callback_url",
    "request_issues",
    "request_warnings",
    "validate_request",
]

#: How far in the future ``consent.obtainedAt`` may be before it is refused (clocks disagree a little).
CONSENT_CLOCK_SKEW = _dt.timedelta(minutes=5)

#: The widest UTC offset in use; "today" for a date of birth is today's date there.
_EARLIEST_ZONE_OFFSET = _dt.timedelta(hours=14)

#: Kosovo: not in ISO 3166-1, but accepted by the API under these user-assigned codes.
KOSOVO_ALPHA_3 = "XKX"
KOSOVO_ALPHA_2 = "XK"
KOSOVO_NAME = "Kosovo"

#: Documents from which the API extracts an address (``idAddress``): alpha-3 country code -> idType values.
ADDRESS_EXTRACTION_SUPPORT: dict[str, frozenset[str]] = {
    "AUS": frozenset({"DRIVING_LICENSE"}),
    "BHR": frozenset({"DRIVING_LICENSE"}),
    "CAN": frozenset({"DRIVING_LICENSE"}),
    "FRA": frozenset({"ID_CARD", "DRIVING_LICENSE", "PASSPORT"}),
    "DEU": frozenset({"ID_CARD"}),
    "IDN": frozenset({"ID_CARD"}),
    "IRL": frozenset({"DRIVING_LICENSE"}),
    "MYS": frozenset({"ID_CARD"}),
    "MLT": frozenset({"ID_CARD", "DRIVING_LICENSE"}),
    "MEX": frozenset({"ID_CARD"}),
    "PER": frozenset({"ID_CARD", "DRIVING_LICENSE"}),
    "ROU": frozenset({"ID_CARD"}),
    "SGP": frozenset({"ID_CARD"}),
    "ESP": frozenset({"ID_CARD"}),
    "GBR": frozenset({"DRIVING_LICENSE"}),
    "USA": frozenset({"ID_CARD", "DRIVING_LICENSE"}),
}

#: Countries whose ``userLocation.state`` must be an ISO 3166-2 subdivision code (without the country prefix).
_STATE_CODE_COUNTRIES = {"USA": "US", "CAN": "CA", "AUS": "AU"}

_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
)
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_URL_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f]")


class _TextRule(NamedTuple):
    """A rule every string field must keep: its issue code and message (which never shows the text)."""

    code: str
    message: str


_NOT_ENCODABLE = _TextRule(
    "not_encodable",
    "must be encodable as UTF-8: it contains a surrogate code point (text decoded with errors='surrogateescape' "
    "or a broken UTF-16 pair)",
)
_CONTROL_CHARACTER = _TextRule(
    "control_character",
    "must not contain control characters (NUL, tab, line breaks, DEL or other C0 / C1 controls)",
)
_BIDI_CONTROL = _TextRule(
    "bidi_control",
    "must not contain bidirectional formatting characters (U+061C, U+200E, U+200F, U+202A to U+202E, "
    "U+2066 to U+2069): they make the text display differently from what it is",
)
#: In the order their issues are reported.
_TEXT_RULES = (_NOT_ENCODABLE, _CONTROL_CHARACTER, _BIDI_CONTROL)

#: Bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and the implicit marks (LRM, RLM,
#: ALM). They are only some of the format characters (category Cf): the others are not refused because real
#: text needs them, e.g. ZERO WIDTH JOINER (U+200D) inside emoji sequences, ZERO WIDTH NON-JOINER (U+200C) in
#: Persian and Indic spelling, SOFT HYPHEN (U+00AD) in names, and tag characters in subdivision flag emoji.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _text_rule_broken_by(char: str) -> _TextRule | None:
    category = unicodedata.category(char)
    if category == "Cs":  # the only code points a str can hold that UTF-8 cannot encode
        return _NOT_ENCODABLE
    if category == "Cc":
        return _CONTROL_CHARACTER
    if char in _BIDI_CONTROLS:
        return _BIDI_CONTROL
    return None


def _broken_text_rules(text: str) -> list[_TextRule]:
    """The text rules ``text`` breaks, each once, in :data:`_TEXT_RULES` order."""
    if text.isprintable():  # every character the rules refuse (Cs, Cc, bidi Cf) is unprintable
        return []
    broken = {_text_rule_broken_by(char) for char in text}
    return [rule for rule in _TEXT_RULES if rule in broken]


def text_issues(text: str, path: str) -> list[ValidationIssue]:
    """The text rules ``text`` breaks, as issues at ``path`` (for text that did not come through a request)."""
    return [ValidationIssue(path, rule.code, rule.message) for rule in _broken_text_rules(text)]


_deferred: contextvars.ContextVar[bool] = contextvars.ContextVar("netverify_deferred", default=False)


# ----------------------------------------------------------------------------------------------------
# ISO 3166 data (pycountry, imported on first use)


@functools.lru_cache(maxsize=1)
def _alpha3_codes() -> frozenset[str]:
    import pycountry

    return frozenset(c.alpha_3 for c in pycountry.countries)


@functools.lru_cache(maxsize=1)
def _alpha2_codes() -> frozenset[str]:
    import pycountry

    return frozenset(c.alpha_2 for c in pycountry.countries)


@functools.lru_cache(maxsize=1)
def _country_names_folded() -> frozenset[str]:
    import pycountry

    names: set[str] = {KOSOVO_NAME.casefold()}
    for country in pycountry.countries:
        for attr in ("name", "official_name", "common_name"):
            name = getattr(country, attr, None)
            if name:
                names.add(name.casefold())
    return frozenset(names)


@functools.lru_cache(maxsize=8)
def _subdivision_suffixes(alpha_2: str) -> frozenset[str]:
    """Subdivision codes of a country without the ``XX-`` prefix (``IL``, ``NSW``, ``ON``)."""
    import pycountry

    database: Any = pycountry.subdivisions
    found = database.get(country_code=alpha_2) or []
    return frozenset(s.code.split("-", 1)[1] for s in found)


def is_country_code(code: str) -> bool:
    """True for a current ISO 3166-1 alpha-3 code (upper case) or ``XKX`` (Kosovo)."""
    return code == KOSOVO_ALPHA_3 or code in _alpha3_codes()


def _us_state_codes() -> frozenset[str]:
    return _subdivision_suffixes("US")


def _is_country_designation(value: str) -> bool:
    """The PASSPORT / ID_CARD forms of ``usState`` that name a country."""
    if value in (KOSOVO_ALPHA_2, KOSOVO_ALPHA_3):
        return True
    if value in _alpha2_codes() or value in _alpha3_codes():
        return True
    return value.casefold() in _country_names_folded()


# ----------------------------------------------------------------------------------------------------
# Callback URL


def normalize_callback_url(value: Any) -> Any:
    """Convert an internationalised host name in a callback URL to IDNA punycode; other values are kept.

    Never raises: a value that cannot be converted is kept unchanged, and validation reports it.
    """
    if not isinstance(value, str) or value.isascii():
        return value
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(value)
        netloc = parts.netloc
        userinfo, at, hostport = netloc.rpartition("@")
        host, colon, port = hostport.partition(":")
        if host.isascii() or host.startswith("["):
            return value
        import idna

        ascii_host = idna.encode(host, uts46=True).decode("ascii")
        new_netloc = f"{userinfo}{at}{ascii_host}{colon}{port}"
        return urlunsplit((parts.scheme, new_netloc, parts.path, parts.query, parts.fragment))
    except ValueError:  # includes idna.IDNAError and UnicodeError
        return value


def _callback_url_issues(url: str, path: str) -> list[ValidationIssue]:
    """The URL rules of the Customer Portal guide, applied to an (already punycode-converted) URL."""
    import ipaddress
    from urllib.parse import urlsplit

    issues: list[ValidationIssue] = []

    def add(code: str, message: str) -> None:
        issues.append(ValidationIssue(path, code, message))

    if not url.isascii():
        try:
            host_is_ascii = urlsplit(url).netloc.isascii()
        except ValueError:
            host_is_ascii = False
        if host_is_ascii:
            add("invalid_url", "must contain only ASCII characters (percent-encode the path)")
        else:  # normalize_callback_url could not convert the host to punycode
            add("invalid_url", "has a host name that is not a valid internationalised domain name (IDNA)")
        return issues
    if _URL_FORBIDDEN_CHARS.search(url):
        add("invalid_url", "must not contain spaces or control characters")
        return issues
    try:
        parts = urlsplit(url)
    except ValueError:
        add("invalid_url", "is not a valid URL")
        return issues
    if parts.scheme != "https":
        add("https_required", "must use the https scheme")
    if not url.lower().startswith(parts.scheme + "://") or not parts.netloc:
        add("invalid_url", "must be an absolute URL with a host name")
        return issues
    if "?" in url:
        add("query_not_allowed", "must not contain a query string")
    if "#" in url:
        add("fragment_not_allowed", "must not contain a fragment identifier")
    if "@" in parts.netloc:
        add("userinfo_not_allowed", "must not contain user information (user:password@)")
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.startswith("["):
        add("ip_host_not_allowed", "must use a host name, not an IP address")
        return issues
    host, colon, _port = hostport.partition(":")
    if colon:
        add("port_not_allowed", "must not specify a port")
    bare = host.rstrip(".") if host.endswith(".") else host
    labels = bare.split(".")
    try:
        ipaddress.ip_address(bare)
        is_ip = True
    except ValueError:
        is_ip = bool(labels) and labels[-1].isdigit()
    if is_ip:
        add("ip_host_not_allowed", "must use a host name, not an IP address")
    elif not bare or len(bare) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        add("invalid_url", "has an invalid host name")
    elif any(label.lower().startswith("xn--") for label in labels):
        import idna

        try:
            idna.decode(bare)
        except ValueError:  # includes idna.IDNAError
            add("invalid_url", "has an invalid IDNA (punycode) host name")
    if _EMAIL.search(url):
        add("contains_email", "must not contain an e-mail address: the API forbids personal data in the URL")
    return issues


# ----------------------------------------------------------------------------------------------------
# The rules


class _Checker:
    """Collects issues while walking one request."""

    def __init__(self, now: _dt.datetime) -> None:
        self.now = now
        self.issues: list[ValidationIssue] = []

    def add(self, path: str, code: str, message: str) -> None:
        self.issues.append(ValidationIssue(path, code, message))

    def string(
        self,
        value: Any,
        path: str,
        *,
        required: bool = False,
        max_length: int | None = None,
        text_rules: bool = True,
    ) -> bool:
        """Type, presence, emptiness, length and text rules of a string field; True when the value is usable.

        ``text_rules=False`` only for a field whose own rules are stricter (``callbackUrl``: ASCII, no controls).
        """
        if value is None:
            if required:
                self.add(path, "required", "is required")
            return False
        if not isinstance(value, str):
            self.add(path, "type", f"must be a string, not {type(value).__name__}")
            return False
        if not value.strip():
            self.add(path, "empty", "must not be empty or blank (use None to leave it out)")
            return False
        limit = MAX_LENGTHS.get(path) if max_length is None else max_length
        if limit is not None and len(value) > limit:
            self.add(path, "too_long", f"must be at most {limit} characters long (got {len(value)})")
            return False
        if text_rules:
            broken = _broken_text_rules(value)
            for rule in broken:
                self.add(path, rule.code, rule.message)
            return not broken
        return True

    def no_email(self, value: str, path: str) -> None:
        if _EMAIL.search(value):
            self.add(
                path,
                "contains_email",
                "must not contain an e-mail address: the API forbids personal data (PII) in this field",
            )


def _check_image(c: _Checker, image: Any, path: str, *, required: bool) -> bool:
    if image is None:
        if required:
            c.add(path, "required", "is required")
        return False
    if not isinstance(image, Image):
        c.add(path, "type", f"must be an Image (see Image.from_bytes), not {type(image).__name__}")
        return False
    ok = True
    data: object = image.data
    mime_type: object = image.mime_type
    if not isinstance(data, bytes):
        c.add(path, "type", f"image data must be bytes, not {type(data).__name__}")
        ok = False
    elif not data:
        c.add(path, "empty", "must not be empty")
        ok = False
    elif (too_large := image_bytes_issue(len(data))) is not None:
        c.add(path, too_large.code, too_large.message)
        ok = False
    if mime_type is not None and not isinstance(mime_type, MimeType):
        allowed = ", ".join(m.value for m in MimeType)
        c.add(path + "MimeType", "invalid_choice", f"must be one of: {allowed}")
        ok = False
    return ok


def _check_enum(c: _Checker, value: Any, enum_type: Any, path: str, *, required: bool = False) -> bool:
    if value is None:
        if required:
            c.add(path, "required", "is required")
        return False
    if isinstance(value, enum_type):
        return True
    allowed = ", ".join(m.value for m in enum_type)
    if isinstance(value, str) and not value.strip():
        c.add(path, "empty", f"must not be empty; one of: {allowed}")
    elif isinstance(value, str):
        c.add(path, "invalid_choice", f"must be one of: {allowed}")
    else:
        c.add(path, "type", f"must be one of: {allowed} (not {type(value).__name__})")
    return False


def _check_country(c: _Checker, value: Any, path: str, *, required: bool) -> bool:
    if not c.string(value, path, required=required):
        return False
    if not is_country_code(value):
        c.add(path, "invalid_country", "must be a current ISO 3166-1 alpha-3 code (upper case) or XKX")
        return False
    return True


def _check_date(c: _Checker, value: Any, path: str) -> bool:
    if value is None:
        return False
    if isinstance(value, _dt.datetime) or not isinstance(value, _dt.date):
        c.add(path, "type", f"must be a datetime.date, not {type(value).__name__}")
        return False
    return True


def _check_enabled_fields(c: _Checker, value: Any) -> set[Any]:
    path = "enabledFields"
    if value is None:
        return set()
    if not isinstance(value, tuple):
        c.add(path, "type", "must be a sequence of EnabledField values")
        return set()
    allowed = ", ".join(m.value for m in EnabledField)
    seen: set[Any] = set()
    bad = duplicated = False
    for item in value:
        if not isinstance(item, EnabledField):
            bad = True
            continue
        if item in seen:
            duplicated = True
        seen.add(item)
    if bad:
        c.add(path, "invalid_choice", f"every item must be one of: {allowed}")
    if duplicated:
        c.add(path, "duplicate", "must not list a field twice")
    if not bad:
        wire_length = len(",".join(item.value for item in value))
        limit = MAX_LENGTHS[path]
        if wire_length > limit:
            c.add(path, "too_long", f"must be at most {limit} characters once joined (got {wire_length})")
    return seen


def _check_us_state(c: _Checker, value: Any, id_type: Any) -> None:
    path = "usState"
    if not c.string(value, path):
        return
    if not isinstance(id_type, IdType):
        return  # reported on idType; the allowed values depend on it
    if id_type is IdType.DRIVING_LICENSE:
        if value not in _us_state_codes():
            c.add(
                path,
                "invalid_us_state",
                "for DRIVING_LICENSE must be the last two characters of an ISO 3166-2:US code (e.g. IL)",
            )
    elif value not in _us_state_codes() and not _is_country_designation(value):
        c.add(
            path,
            "invalid_us_state",
            f"for {id_type.value} must be a US state code (last two characters of ISO 3166-2:US), or a "
            "country as ISO 3166-1 name, alpha-2 or alpha-3 code (Kosovo, XK, XKX for Kosovo)",
        )


def _check_timestamp(c: _Checker, value: Any, path: str) -> bool:
    if not isinstance(value, _dt.datetime):
        c.add(path, "type", f"must be a datetime.datetime, not {type(value).__name__}")
        return False
    if value.tzinfo is None or value.utcoffset() is None:
        c.add(path, "timezone_required", "must be timezone-aware (e.g. tzinfo=datetime.timezone.utc)")
        return False
    return True


def _check_user_consent(c: _Checker, value: Any) -> None:
    root = "userConsent"
    if not isinstance(value, UserConsent):
        c.add(root, "type", f"must be a UserConsent, not {type(value).__name__}")
        return

    ip_path = f"{root}.userIp"
    if c.string(value.user_ip, ip_path, required=True):
        import ipaddress

        try:
            ipaddress.ip_address(value.user_ip)
        except ValueError:
            c.add(ip_path, "invalid_ip", "must be a valid IPv4 or IPv6 address")

    loc_path = f"{root}.userLocation"
    location: object = value.user_location
    country: str | None = None
    if location is None:
        c.add(loc_path, "required", "is required")
    elif not isinstance(location, UserLocation):
        c.add(loc_path, "type", f"must be a UserLocation, not {type(location).__name__}")
    else:
        if _check_country(c, location.country, f"{loc_path}.country", required=True):
            country = location.country
        state_path = f"{loc_path}.state"
        if c.string(location.state, state_path) and country in _STATE_CODE_COUNTRIES:
            if location.state not in _subdivision_suffixes(_STATE_CODE_COUNTRIES[country]):
                c.add(
                    state_path,
                    "invalid_state",
                    f"for {country} must be an ISO 3166-2 subdivision code without the country prefix "
                    "(e.g. IL, ON, NSW)",
                )

    consent_path = f"{root}.consent"
    consent: object = value.consent
    if consent is None:
        if country == "USA":
            c.add(consent_path, "required_for_usa", "is required when userLocation.country is USA")
        return
    if not isinstance(consent, Consent):
        c.add(consent_path, "type", f"must be a Consent, not {type(consent).__name__}")
        return
    obtained_ok = _check_enum(c, consent.obtained, ConsentObtained, f"{consent_path}.obtained", required=True)
    at_path = f"{consent_path}.obtainedAt"
    if consent.obtained_at is None:
        if obtained_ok and consent.obtained is ConsentObtained.YES:
            c.add(at_path, "required_when_obtained", "is required when consent.obtained is yes")
        return
    if not _check_timestamp(c, consent.obtained_at, at_path):
        return
    if consent.obtained_at > c.now + CONSENT_CLOCK_SKEW:
        c.add(at_path, "in_future", "must not be in the future")
    elif consent.obtained_at < c.now - _dt.timedelta(days=CONSENT_MAX_AGE_DAYS):
        c.add(
            at_path,
            "consent_expired",
            f"is older than the {CONSENT_MAX_AGE_DAYS}-day limit of continuous consent; obtain consent again",
        )


def request_issues(req: Any, *, now: _dt.datetime | None = None) -> list[ValidationIssue]:
    """Every documented rule the request breaks, in field order (empty when it is valid).

    ``now`` (aware) is the reference time for "in the future" and consent age; the current time by default.
    """
    if now is None:
        now = _dt.datetime.now(_dt.timezone.utc)
    c = _Checker(now)

    if c.string(req.merchant_id_scan_reference, "merchantIdScanReference", required=True):
        c.no_email(req.merchant_id_scan_reference, "merchantIdScanReference")
    _check_image(c, req.frontside_image, "frontsideImage", required=True)
    _check_country(c, req.country, "country", required=True)
    _check_enum(c, req.id_type, IdType, "idType", required=True)
    _check_image(c, req.backside_image, "backsideImage", required=False)
    face_present = req.face_image is not None
    _check_image(c, req.face_image, "faceImage", required=False)

    enabled = _check_enabled_fields(c, req.enabled_fields)
    face_match = EnabledField.ID_FACE_MATCH in enabled
    if face_match and not face_present:
        c.add("faceImage", "required_with_face_match", "is required when idFaceMatch is enabled")

    c.string(req.merchant_reporting_criteria, "merchantReportingCriteria")
    if c.string(req.customer_id, "customerId"):
        c.no_email(req.customer_id, "customerId")
    if c.string(req.callback_url, "callbackUrl", text_rules=False):
        c.issues.extend(_callback_url_issues(req.callback_url, "callbackUrl"))
    c.string(req.first_name, "firstName")
    c.string(req.last_name, "lastName")
    _check_us_state(c, req.us_state, req.id_type)
    _check_date(c, req.expiry, "expiry")
    c.string(req.number, "number")
    if _check_date(c, req.dob, "dob") and req.dob > (now + _EARLIEST_ZONE_OFFSET).date():
        c.add("dob", "in_future", "must not be in the future")
    _check_enum(c, req.callback_granularity, CallbackGranularity, "callbackGranularity")
    c.string(req.personal_number, "personalNumber")

    if req.user_consent is not None:
        _check_user_consent(c, req.user_consent)
    elif face_match:
        c.add(
            "userConsent",
            "required_with_face_match",
            "is required when idFaceMatch is enabled (biometric data is processed)",
        )
    return c.issues


def request_warnings(req: Any) -> list[str]:
    """Messages for a valid request that is allowed but probably not what the caller meant."""
    found: list[str] = []
    fields = req.enabled_fields or ()
    if EnabledField.ID_ADDRESS in fields and isinstance(req.id_type, IdType):
        supported = ADDRESS_EXTRACTION_SUPPORT.get(req.country, frozenset())
        if req.id_type.value not in supported:
            found.append(
                f"idAddress is enabled but the API does not extract addresses from {req.id_type.value} "
                f"documents of {req.country}; the field will stay empty"
            )
    return found


def validate_request(req: Any) -> None:
    """Raise :class:`~netverify_async.RequestValidationError` listing every broken rule; warn about odd ones.

    Called by ``NetverifyRequest`` on construction. Does nothing inside :func:`deferred_validation`.
    """
    if _deferred.get():
        return
    issues = request_issues(req)
    if issues:
        raise RequestValidationError(issues)
    for message in request_warnings(req):
        warnings.warn(message, NetverifyWarning, stacklevel=4)


@contextlib.contextmanager
def deferred_validation() -> Iterator[None]:
    """Build ``NetverifyRequest`` objects without validating them (the wire parser validates afterwards)."""
    token = _deferred.set(True)
    try:
        yield
    finally:
        _deferred.reset(token)
