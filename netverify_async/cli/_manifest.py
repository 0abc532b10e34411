"""Batch manifests: one document set per row, in CSV (with a header row) or JSON Lines.

Reading is lazy (one row at a time) and total: whatever the file holds, a row becomes either a
:class:`ManifestRow` or an :class:`InvalidRow` naming the row and the field, and the only exception raised is
:class:`ManifestError` (a :class:`~netverify_async.NetverifyError`) when the file as a whole cannot be read:
missing, unknown extension, not CSV / JSON Lines at all, a bad header, or a line too long to be a row.

Rows are numbered like a spreadsheet, by the line they start on: in a CSV file the header is row 1 and the
first document set is row 2; in JSON Lines each line is a row. Blank lines are skipped.

Columns (CSV header names or JSON keys; ``camelCase`` wire names and ``kebab-case`` are accepted too):

=============================  ==============================================================================
column                         meaning
=============================  ==============================================================================
``reference``                  ``merchantIdScanReference`` (required, unique; no personal data)
``front``                      path of the front image (required); ``back``, ``face`` optional
``country``                    ISO 3166-1 alpha-3 country of the document, or ``XKX`` (required)
``id_type``                    ``PASSPORT``, ``DRIVING_LICENSE``, ``ID_CARD`` or ``VISA`` (required)
``customer_id``                your customer id (no personal data)
``callback_url``               HTTPS URL for the result
``callback_granularity``       ``onFinish`` or ``onAllSteps``
``merchant_reporting_criteria`` free text for your reports
``enabled_fields``             fields to extract, separated by ``,`` ``;`` ``|`` or spaces (JSON: a list too)
``user_ip``, ``user_country``,  consent data; ``consent`` is ``yes``/``no``/``na``; ``consent_at`` is
``user_state``, ``consent``,   ``YYYY-MM-DDThh:mm:ss.SSSZ`` (default: now when ``consent`` is ``yes``)
``consent_at``
``first_name``, ``last_name``,  presets of data on the document (``dob`` and ``expiry`` as ``YYYY-MM-DD``)
``number``, ``personal_number``,
``us_state``, ``dob``,
``expiry``
=============================  ==============================================================================

Image paths are relative to the manifest's folder; absolute paths are used as they are.

Why one module of about 700 lines: the two formats share every rule of a row (columns, paths, images, fields),
and each rule's message lives next to its check.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import attrs

from .._constants import MAX_IMAGE_BYTES
from .._convert import json_type
from .._errors import NetverifyError, RequestValidationError, ValidationIssue

if TYPE_CHECKING:
    from .._models import NetverifyRequest

__all__ = [
    "COLUMNS",
    "REQUIRED_COLUMNS",
    "InvalidRow",
    "ManifestError",
    "ManifestReader",
    "ManifestRow",
    "build_request",
    "canonical_column",
    "column_of",
    "read_rows",
]

ManifestFormat = Literal["csv", "jsonl"]

#: Every column a manifest may have, in documentation order.
COLUMNS = (
    "reference",
    "front",
    "back",
    "face",
    "country",
    "id_type",
    "customer_id",
    "callback_url",
    "callback_granularity",
    "merchant_reporting_criteria",
    "enabled_fields",
    "user_ip",
    "user_country",
    "user_state",
    "consent",
    "consent_at",
    "first_name",
    "last_name",
    "number",
    "personal_number",
    "us_state",
    "dob",
    "expiry",
)
REQUIRED_COLUMNS = ("reference", "front", "country", "id_type")
IMAGE_COLUMNS = ("front", "back", "face")
#: Longest line read as (part of) a row; real rows are a few hundred characters.
MAX_LINE_CHARS = 1024 * 1024
_EXTENSIONS: dict[str, ManifestFormat] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_ALIASES = {
    "merchant_id_scan_reference": "reference",
    "merchant_reference": "reference",
    "frontside_image": "front",
    "front_image": "front",
    "backside_image": "back",
    "back_image": "back",
    "face_image": "face",
    "user_location_country": "user_country",
    "user_location_state": "user_state",
    "consent_obtained": "consent",
    "consent_obtained_at": "consent_at",
    "obtained_at": "consent_at",
}
#: Wire path of a request field -> the manifest column it comes from (for messages).
_WIRE_TO_COLUMN = {
    "merchantIdScanReference": "reference",
    "frontsideImage": "front",
    "frontsideImageMimeType": "front",
    "backsideImage": "back",
    "backsideImageMimeType": "back",
    "faceImage": "face",
    "faceImageMimeType": "face",
    "idType": "id_type",
    "customerId": "customer_id",
    "callbackUrl": "callback_url",
    "callbackGranularity": "callback_granularity",
    "merchantReportingCriteria": "merchant_reporting_criteria",
    "enabledFields": "enabled_fields",
    "firstName": "first_name",
    "lastName": "last_name",
    "personalNumber": "personal_number",
    "usState": "us_state",
    "userConsent": "user_ip",
    "userConsent.userIp": "user_ip",
    "userConsent.userLocation": "user_country",
    "userConsent.userLocation.country": "user_country",
    "userConsent.userLocation.state": "user_state",
    "userConsent.consent": "consent",
    "userConsent.consent.obtained": "consent",
    "userConsent.consent.obtainedAt": "consent_at",
}
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_LIST_SEPARATORS = re.compile(r"[,;|\s]+")


class ManifestError(NetverifyError, ValueError):
    """The manifest as a whole cannot be read (missing, wrong format, bad header). Names no row content."""


def _issue(column: str, code: str, message: str) -> ValidationIssue:
    return ValidationIssue(column, code, message)


@attrs.frozen
class ManifestRow:
    """One readable row: its number and its values by canonical column (absent columns are missing)."""

    row: int
    values: Mapping[str, str | tuple[str, ...]] = attrs.field(repr=False)

    @property
    def reference(self) -> str | None:
        value = self.values.get("reference")
        return value if isinstance(value, str) else None


@attrs.frozen
class InvalidRow:
    """A row that cannot become a request: every problem found, each naming its column."""

    row: int
    reference: str | None
    issues: tuple[ValidationIssue, ...]

    @property
    def message(self) -> str:
        """``row 7: country: ... [code]; ...`` (never repeats a value)."""
        parts = [
            f"{issue.message} [{issue.code}]" if issue.path == "row" else str(issue) for issue in self.issues
        ]
        return f"row {self.row}: " + "; ".join(parts)

    def error(self) -> RequestValidationError:
        """The problems as the library's validation error."""
        return RequestValidationError(self.issues)


def canonical_column(name: str) -> str:
    """``merchantIdScanReference`` / ``ID-Type`` / `` id type `` -> the manifest's own column name."""
    text = name.strip().lstrip("\ufeff")
    text = _CAMEL_BOUNDARY.sub("_", text).lower()
    text = re.sub(r"[\s\-.]+", "_", text)
    return _ALIASES.get(text, text)


def _printable(name: str, limit: int = 40) -> str:
    """A column name safe to show in one line (ASCII, shortened)."""
    shown = ascii(name[:limit])
    return shown + ("..." if len(name) > limit else "")


def _has_bad_text(value: str) -> bool:
    """Lone surrogates (undecodable bytes) or control characters (C0 other than tab, DEL, C1)."""
    return any(
        "\ud800" <= ch <= "\udfff" or (ord(ch) < 32 and ch != "\t") or "\x7f" <= ch <= "\x9f" for ch in value
    )


# ----------------------------------------------------------------------------------------------------------
# Reading lines and rows
# ----------------------------------------------------------------------------------------------------------


class _Lines:
    """Lines of a text stream, each at most :data:`MAX_LINE_CHARS` long; counts them.

    An overlong line is skipped to its end and reported through :attr:`overlong` (CSV refuses the file at
    that point; JSON Lines makes it an invalid row).
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.line = 0
        self.overlong = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self._stream.readline(MAX_LINE_CHARS + 1)
        if not line:
            raise StopIteration
        self.line += 1
        self.overlong = False
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            self.overlong = True
            while True:  # drop the rest of the line, chunk by chunk
                rest = self._stream.readline(MAX_LINE_CHARS)
                if not rest or rest.endswith("\n"):
                    break
            return ""
        return line


def _csv_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _check_header(names: list[str]) -> list[str]:
    columns = [canonical_column(name) for name in names]
    if not any(columns):
        raise ManifestError("the header row is empty")
    seen: set[str] = set()
    for column in columns:
        if column and column in seen:
            raise ManifestError(f"column {column!r} appears twice in the header")
        seen.add(column)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    unknown = [i for i, c in enumerate(columns) if c and c not in COLUMNS]
    if missing:
        # Unknown names are not echoed here: without the required columns the first row is probably data.
        found = f"; {len(unknown)} column(s) are not manifest columns" if unknown else ""
        raise ManifestError(
            f"the header lacks the required column(s): {', '.join(missing)}{found} (is the first row a header?)"
        )
    if unknown:
        listed = ", ".join(_printable(names[i]) for i in unknown[:5])
        raise ManifestError(f"unknown column(s) in the header: {listed} (known: {', '.join(COLUMNS)})")
    return columns


def _csv_rows(stream: IO[str]) -> Iterator[ManifestRow | InvalidRow]:
    """Validate the header now (raising ManifestError), then return the lazy rows."""
    lines = _Lines(stream)
    try:
        header_line = next(lines, None)
        while header_line is not None and not header_line.strip() and not lines.overlong:
            header_line = next(lines, None)
    except UnicodeDecodeError:  # pragma: no cover - the stream decodes with surrogateescape
        raise ManifestError("the file is not UTF-8 text") from None
    if lines.overlong:
        raise ManifestError("the first line is too long for a CSV header; is this a CSV file?")
    if header_line is None:
        raise ManifestError("the file is empty: a CSV manifest needs a header row")
    if _has_bad_text(header_line.rstrip("\r\n")):
        raise ManifestError("the header row holds binary data or undecodable bytes; is this a CSV file?")
    delimiter = _csv_delimiter(header_line)
    try:
        names = next(csv.reader([header_line], delimiter=delimiter), [])
    except csv.Error as exc:
        raise ManifestError(f"the header row is not valid CSV ({exc})") from None
    columns = _check_header(names)
    return _csv_body(lines, columns, delimiter)


def _csv_body(lines: _Lines, columns: list[str], delimiter: str) -> Iterator[ManifestRow | InvalidRow]:
    reader = csv.reader(lines, delimiter=delimiter, strict=False)
    while True:
        start = lines.line + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if lines.overlong:
                raise ManifestError(
                    f"row {start}: a line longer than {MAX_LINE_CHARS:,} characters; is this a CSV file?"
                ) from None
            reason = str(exc).split("(")[0].strip() or "malformed"
            yield InvalidRow(start, None, (_issue("row", "malformed_csv", f"is not valid CSV: {reason}"),))
            continue
        if lines.overlong:
            raise ManifestError(
                f"row {start}: a line longer than {MAX_LINE_CHARS:,} characters; is this a CSV file?"
            )
        if not any(field.strip() for field in record):
            continue  # a blank line
        yield _csv_record(start, record, columns)


def _csv_record(row: int, record: list[str], columns: list[str]) -> ManifestRow | InvalidRow:
    issues: list[ValidationIssue] = []
    extra = record[len(columns) :]
    if any(field.strip() for field in extra):
        issues.append(
            _issue(
                "row",
                "too_many_values",
                f"has {len(record)} values but the header names {len(columns)} columns",
            )
        )
    values: dict[str, str | tuple[str, ...]] = {}
    for column, raw in zip(columns, record, strict=False):
        if not column:
            if raw.strip():
                issues.append(_issue("row", "unnamed_value", "has a value under a column without a name"))
            continue
        value = raw.strip()
        if not value:
            continue
        if "\n" in value or "\r" in value:
            issues.append(_issue(column, "multiline_value", "spans several lines (is a quote left open?)"))
            continue
        if _has_bad_text(value):
            issues.append(_issue(column, "bad_text", "holds undecodable bytes or control characters"))
            continue
        values[column] = value
    reference = values.get("reference")
    ref = reference if isinstance(reference, str) else None
    if issues:
        return InvalidRow(row, ref, tuple(issues))
    return ManifestRow(row, values)


def _jsonl_value(column: str, value: Any) -> str | tuple[str, ...] | ValidationIssue | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if _has_bad_text(text):
            return _issue(column, "bad_text", "holds undecodable text or control characters")
        return text or None
    if column == "enabled_fields" and isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            return _issue(column, "type", "must be a list of strings")
        items = tuple(item.strip() for item in value if item.strip())
        if any(_has_bad_text(item) for item in items):
            return _issue(column, "bad_text", "holds undecodable text or control characters")
        return items or None
    kind = "a string or a list of strings" if column == "enabled_fields" else "a string"
    return _issue(column, "type", f"must be {kind}, not a JSON {json_type(value)}")




def _jsonl_object(row: int, obj: dict[Any, Any]) -> ManifestRow | InvalidRow:
    issues: list[ValidationIssue] = []
    values: dict[str, str | tuple[str, ...]] = {}
    given: set[str] = set()
    for key, raw in obj.items():
        column = canonical_column(str(key))
        if column not in COLUMNS:
            issues.append(_issue(_printable(str(key)), "unknown_column", "is not a manifest column"))
            continue
        if column in given:
            issues.append(_issue(column, "duplicate_column", "is given twice (under two spellings)"))
            continue
        given.add(column)
        value = _jsonl_value(column, raw)
        if isinstance(value, ValidationIssue):
            issues.append(value)
        elif value is not None:
            values[column] = value
    reference = values.get("reference")
    ref = reference if isinstance(reference, str) else None
    if issues:
        return InvalidRow(row, ref, tuple(issues))
    return ManifestRow(row, values)


def _parse_json_line(line: str) -> tuple[dict[Any, Any] | None, str | None]:
    try:
        obj = json.loads(line)
    except RecursionError:
        return None, "is nested too deeply"
    except ValueError:
        return None, "is not valid JSON"
    if not isinstance(obj, dict):
        return None, f"must be a JSON object, not a JSON {json_type(obj)}"
    return obj, None


def _jsonl_rows(stream: IO[str]) -> Iterator[ManifestRow | InvalidRow]:
    """Check that the first non-blank line is a JSON object (raising ManifestError), then read lazily."""
    lines = _Lines(stream)
    first: tuple[int, dict[Any, Any]] | None = None
    for line in lines:
        if lines.overlong:
            raise ManifestError("the first line is too long for a JSON Lines row; is this a JSON Lines file?")
        if not line.strip():
            continue
        obj, problem = _parse_json_line(line)
        if obj is None:
            raise ManifestError(f"line {lines.line} {problem}; is this a JSON Lines file?")
        first = (lines.line, obj)
        break
    return _jsonl_body(lines, first)


def _jsonl_body(
    lines: _Lines, first: tuple[int, dict[Any, Any]] | None
) -> Iterator[ManifestRow | InvalidRow]:
    if first is None:
        return
    yield _jsonl_object(*first)
    for line in lines:
        row = lines.line
        if lines.overlong:
            yield InvalidRow(
                row, None, (_issue("row", "too_long", f"is longer than {MAX_LINE_CHARS:,} characters"),)
            )
            continue
        if not line.strip():
            continue
        obj, problem = _parse_json_line(line)
        if obj is None:
            assert problem is not None
            yield InvalidRow(row, None, (_issue("row", "malformed_json", problem),))
            continue
        yield _jsonl_object(row, obj)


def read_rows(stream: IO[str], fmt: ManifestFormat) -> Iterator[ManifestRow | InvalidRow]:
    """The rows of a manifest read from a text stream.

    The header (CSV) or the first row (JSON Lines) is checked before this returns, raising
    :class:`ManifestError` if the text is not a manifest at all; the rest is read lazily. Open files with
    ``encoding="utf-8-sig", errors="surrogateescape", newline=""`` so undecodable bytes become invalid rows.
    """
    if fmt == "csv":
        return _csv_rows(stream)
    if fmt == "jsonl":
        return _jsonl_rows(stream)
    raise ManifestError(f"unknown manifest format {fmt!r}")


# ----------------------------------------------------------------------------------------------------------
# The manifest file
# ----------------------------------------------------------------------------------------------------------


def manifest_format(path: Path) -> ManifestFormat:
    """The format named by the file's extension; ManifestError for any other extension."""
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise ManifestError(
            f"cannot tell the format of {path.name!r} from its extension: use .csv, .jsonl or .ndjson"
        )
    return fmt


class ManifestReader:
    """A manifest file: :meth:`open` checks it can be read (ManifestError otherwise); iterate for the rows.

    Image paths in rows are resolved against :attr:`base_dir`, the manifest's folder.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.format = manifest_format(self.path)
        self.base_dir = self.path.absolute().parent
        self._stream: IO[str] | None = None
        self._rows: Iterator[ManifestRow | InvalidRow] | None = None

    def _open_stream(self) -> IO[str]:
        try:
            if self.path.is_dir():
                raise ManifestError(f"manifest {str(self.path)!r} is a folder, not a file")
            return open(self.path, encoding="utf-8-sig", errors="surrogateescape", newline="")
        except FileNotFoundError:
            raise ManifestError(f"manifest {str(self.path)!r}: no such file") from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ManifestError(f"manifest {str(self.path)!r} cannot be read: {reason}") from None

    def open(self) -> ManifestReader:
        """Open the file and check its header (or first row)."""
        stream = self._open_stream()
        try:
            self._rows = read_rows(stream, self.format)
        except OSError as exc:
            stream.close()
            raise ManifestError(
                f"manifest {str(self.path)!r} cannot be read: {exc.strerror or type(exc).__name__}"
            ) from None
        except BaseException:
            stream.close()
            raise
        self._stream = stream
        return self

    def __iter__(self) -> Iterator[ManifestRow | InvalidRow]:
        if self._rows is None:
            self.open()
        assert self._rows is not None
        return self._guarded(self._rows)

    def _guarded(self, rows: Iterator[ManifestRow | InvalidRow]) -> Iterator[ManifestRow | InvalidRow]:
        try:
            yield from rows
        except OSError as exc:
            raise ManifestError(
                f"manifest {str(self.path)!r}: reading failed: {exc.strerror or type(exc).__name__}"
            ) from None

    def close(self) -> None:
        """Close the file (idempotent)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def __enter__(self) -> ManifestReader:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def count_rows(self) -> int | None:
        """How many rows the file holds (a separate quick pass); None when it cannot tell."""
        try:
            with self._open_stream() as stream:
                return sum(1 for _ in read_rows(stream, self.format))
        except (NetverifyError, OSError):
            return None


# ----------------------------------------------------------------------------------------------------------
# Rows to requests
# ----------------------------------------------------------------------------------------------------------


def column_of(path: str) -> str:
    """The manifest column a request field's wire path (``userConsent.userIp``) comes from."""
    if path in _WIRE_TO_COLUMN:
        return _WIRE_TO_COLUMN[path]
    head = path.split(".")[0].split("[")[0]
    return _WIRE_TO_COLUMN.get(head, canonical_column(head) if head else path)


def _read_image_file(base_dir: Path, column: str, text: str) -> bytes | ValidationIssue:
    """The bytes of an image file named in a row (blocking; call it in a worker thread)."""
    path = Path(text)
    if not path.is_absolute():
        path = base_dir / path
    try:
        info = path.stat()
        if not path.is_file():
            return _issue(column, "not_a_file", "names a folder or a special file, not an image file")
        if info.st_size > MAX_IMAGE_BYTES:
            return _issue(
                column, "file_too_large", f"the file is larger than {MAX_IMAGE_BYTES:,} bytes (Jumio's limit)"
            )
        with open(path, "rb") as fh:
            data = fh.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError:
        return _issue(column, "file_not_found", "no such file (paths are relative to the manifest's folder)")
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return _issue(column, "unreadable", f"the file cannot be read: {reason}")
    if len(data) > MAX_IMAGE_BYTES:
        return _issue(
            column, "file_too_large", f"the file is larger than {MAX_IMAGE_BYTES:,} bytes (Jumio's limit)"
        )
    if not data:
        return _issue(column, "empty", "the file is empty")
    return data


def _enabled_fields(value: str | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, tuple):
        return value
    return tuple(part for part in _LIST_SEPARATORS.split(value) if part)


def build_request(entry: ManifestRow, base_dir: Path) -> NetverifyRequest | InvalidRow:
    """The :class:`~netverify_async.NetverifyRequest` a row describes, or an :class:`InvalidRow` listing every
    problem of the row at once (unreadable files and broken rules alike).

    Blocking (reads the image files): run it in a worker thread. Never raises for bad row content.
    """
    from .._models import Consent, Image, MimeType, NetverifyRequest, UserConsent, UserLocation
    from .._wire import parse_date, parse_timestamp

    values = entry.values
    issues: list[ValidationIssue] = []

    def text(column: str) -> str | None:
        value = values.get(column)
        if isinstance(value, tuple):
            issues.append(_issue(column, "type", "must be a single value"))
            return None
        return value

    # An image whose file cannot be read is replaced by a stand-in, so that validation still reports the
    # row's other problems; the row is invalid anyway.
    stand_in = Image(b"\xff\xd8\xff\xd9", MimeType.JPEG)
    images: dict[str, Image] = {}
    for column in IMAGE_COLUMNS:
        name = text(column)
        if name is None:
            continue
        data = _read_image_file(base_dir, column, name)
        if isinstance(data, ValidationIssue):
            issues.append(data)
            images[column] = stand_in
        else:
            images[column] = Image.from_bytes(data)
    dates: dict[str, _dt.date] = {}
    for column in ("dob", "expiry"):
        raw = text(column)
        if raw is not None:
            try:
                dates[column] = parse_date(raw)
            except ValueError:
                issues.append(_issue(column, "invalid_date", "must be a date written YYYY-MM-DD"))
    consent = None
    user_ip, user_country, user_state = text("user_ip"), text("user_country"), text("user_state")
    obtained, obtained_at = text("consent"), text("consent_at")
    when: _dt.datetime | None = None
    if obtained_at is not None:
        try:
            when = parse_timestamp(obtained_at)
        except ValueError:
            issues.append(
                _issue("consent_at", "invalid_timestamp", "must be written YYYY-MM-DDThh:mm:ss.SSSZ")
            )
    if user_ip or user_country or user_state or obtained or obtained_at:
        consent_obj = None
        if obtained is not None:
            if when is None and obtained_at is None and obtained.lower() == "yes":
                when = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
            consent_obj = Consent(obtained=obtained.lower(), obtained_at=when)
        consent = UserConsent(
            user_ip=user_ip or "",
            user_location=UserLocation(country=user_country or "", state=user_state),
            consent=consent_obj,
        )
    enabled_raw = values.get("enabled_fields")
    id_type = text("id_type")
    fields: dict[str, Any] = {
        "merchant_id_scan_reference": entry.reference,
        "frontside_image": images.get("front"),
        "backside_image": images.get("back"),
        "face_image": images.get("face"),
        "country": text("country"),
        "id_type": id_type.upper() if id_type is not None else None,
        "enabled_fields": _enabled_fields(enabled_raw) if enabled_raw is not None else None,
        "user_consent": consent,
        "customer_id": text("customer_id"),
        "callback_url": text("callback_url"),
        "callback_granularity": text("callback_granularity"),
        "merchant_reporting_criteria": text("merchant_reporting_criteria"),
        "first_name": text("first_name"),
        "last_name": text("last_name"),
        "number": text("number"),
        "personal_number": text("personal_number"),
        "us_state": text("us_state"),
        "dob": dates.get("dob"),
        "expiry": dates.get("expiry"),
    }
    try:
        request = NetverifyRequest(**fields)
    except RequestValidationError as exc:
        flagged = {issue.path for issue in issues}
        issues.extend(
            _issue(column, i.code, i.message)
            for i in exc.errors
            if (column := column_of(i.path)) not in flagged
        )
    except (TypeError, ValueError) as exc:  # a rule the validator does not name; never a traceback
        issues.append(_issue("row", "invalid", f"cannot become a request ({type(exc).__name__})"))
    if issues:
        return InvalidRow(entry.row, entry.reference, tuple(issues))
    return request
