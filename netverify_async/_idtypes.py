"""Supported and accepted ID documents (``GET /api/netverify/v2/supportedIdTypes`` and ``acceptedIdTypes``).

Both answers have the same shape: a list of countries, each with the ID types it has and whether the back
side of each is required. Jumio's guide names the list of the accepted answer ``supportedIdTypes`` in its
table and ``acceptedIdTypes`` in its sample; both spellings are read.

Parsing is tolerant like the other answers (:mod:`netverify_async._lenient`): unknown keys go to ``extra``,
an ID type outside the documented set stays a raw string, and what was kept as sent is listed in ``problems``.

:func:`acceptance_problem` is the pre-submission check the client runs when ``check_accepted_id_types`` is on:
it says why a request's country + ID type (+ back side) is not what the account accepts, before the request is
sent (and billed: Jumio creates the scan and answers DENIED_UNSUPPORTED_ID_TYPE / _COUNTRY).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._convert import Answer, extra_field, resolve_field_types, wire
from ._enums import IdType
from ._errors import RequestValidationError, ValidationIssue
from ._lenient import load_json_object, read

__all__ = [
    "AcceptedIdTypes",
    "AcquisitionConfig",
    "CountryIdTypes",
    "IdTypeCatalog",
    "IdTypeNotAcceptedError",
    "IdTypeOption",
    "SupportedIdTypes",
    "acceptance_problem",
    "parse_accepted_id_types",
    "parse_supported_id_types",
]

#: Where the two lists are served.
ID_TYPES_PATHS = {
    "supportedIdTypes": "/api/netverify/v2/supportedIdTypes",
    "acceptedIdTypes": "/api/netverify/v2/acceptedIdTypes",
}
#: The ID types the two lists document; a request of another type (VISA) is not checked against them.
LISTED_ID_TYPES = frozenset({IdType.PASSPORT, IdType.DRIVING_LICENSE, IdType.ID_CARD})


@attrs.frozen(repr=False)
class AcquisitionConfig(Answer):
    """``acquisitionConfig``: whether the back side of the document is required."""

    back_side: bool | str | None = attrs.field(default=None, metadata=wire("backSide"))
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(repr=False)
class IdTypeOption(Answer):
    """One ID type of a country (``idTypes`` item)."""

    id_type: IdType | str | None = attrs.field(default=None, metadata=wire("idType"))
    acquisition_config: AcquisitionConfig | str | None = attrs.field(
        default=None, metadata=wire("acquisitionConfig")
    )
    extra: Mapping[str, Any] = extra_field()

    @property
    def back_side_required(self) -> bool:
        """True when the account (or Jumio) requires the back side of this document."""
        config = self.acquisition_config
        return isinstance(config, AcquisitionConfig) and config.back_side is True


@attrs.frozen(repr=False)
class CountryIdTypes(Answer):
    """The ID types of one country: ``country_code`` (ISO 3166-1 alpha-3, or XKX), its name and its types."""

    country_code: str | None = attrs.field(default=None, metadata=wire("countryCode"))
    country_name: str | None = attrs.field(default=None, metadata=wire("countryName"))
    id_types: tuple[IdTypeOption, ...] | str = attrs.field(default=(), metadata=wire("idTypes"))
    extra: Mapping[str, Any] = extra_field()

    def option(self, id_type: IdType | str) -> IdTypeOption | None:
        """The entry of ``id_type`` (an :class:`~netverify_async.IdType` or its name), or None."""
        if isinstance(self.id_types, str):
            return None
        wanted = _name(id_type)
        for option in self.id_types:
            if _name(option.id_type) == wanted:
                return option
        return None


@attrs.frozen(repr=False)
class IdTypeCatalog(Answer):
    """A list of countries and their ID types (the common shape of both answers)."""

    countries: tuple[CountryIdTypes, ...] | str = attrs.field(
        default=(), metadata=wire("supportedIdTypes", also=["acceptedIdTypes"])
    )
    timestamp: _dt.datetime | str | None = attrs.field(default=None, metadata=wire("timestamp"))
    extra: Mapping[str, Any] = extra_field()
    problems: tuple[ValidationIssue, ...] = ()

    def country(self, code: str) -> CountryIdTypes | None:
        """The entry of a country (alpha-3 code, any case), or None when the list does not name it."""
        if isinstance(self.countries, str):
            return None
        wanted = code.strip().upper()
        for entry in self.countries:
            if entry.country_code is not None and entry.country_code.strip().upper() == wanted:
                return entry
        return None

    def option(self, country: str, id_type: IdType | str) -> IdTypeOption | None:
        """The entry of ``id_type`` for ``country``, or None when the list does not name the pair."""
        entry = self.country(country)
        return entry.option(id_type) if entry is not None else None

    def __contains__(self, item: object) -> bool:
        """``("AUT", "PASSPORT") in catalog``."""
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        country, id_type = item
        return isinstance(country, str) and self.option(country, id_type) is not None

    @property
    def country_codes(self) -> tuple[str, ...]:
        """The country codes listed, in the answer's order."""
        if isinstance(self.countries, str):
            return ()
        return tuple(c.country_code for c in self.countries if c.country_code)


@attrs.frozen(repr=False)
class SupportedIdTypes(IdTypeCatalog):
    """``GET /supportedIdTypes``: every ID document Jumio can verify."""


@attrs.frozen(repr=False)
class AcceptedIdTypes(IdTypeCatalog):
    """``GET /acceptedIdTypes``: the ID documents the account accepts (Customer Portal > Settings >
    Accepted IDs)."""


resolve_field_types(AcquisitionConfig, IdTypeOption, CountryIdTypes, IdTypeCatalog, SupportedIdTypes, AcceptedIdTypes)


def _name(value: object) -> str | None:
    if isinstance(value, IdType):
        return value.value
    return value.strip().upper() if isinstance(value, str) else None


def parse_supported_id_types(body: Mapping[str, Any] | bytes | str) -> SupportedIdTypes:
    """Parse the answer of ``GET /supportedIdTypes``; raises :class:`~netverify_async.ResponseError` only when
    it is not a JSON object."""
    return read(load_json_object(body, "supportedIdTypes"), SupportedIdTypes)


def parse_accepted_id_types(body: Mapping[str, Any] | bytes | str) -> AcceptedIdTypes:
    """Parse the answer of ``GET /acceptedIdTypes`` (its list named ``acceptedIdTypes`` or
    ``supportedIdTypes``); raises :class:`~netverify_async.ResponseError` only when it is not a JSON object."""
    return read(load_json_object(body, "acceptedIdTypes"), AcceptedIdTypes)


class IdTypeNotAcceptedError(RequestValidationError):
    """The request's country + ID type (+ back side) is not one the account accepts; nothing was sent.

    Raised before submission when the client's ``check_accepted_id_types`` is on. Jumio would have created
    (and billed) the scan and reported DENIED_UNSUPPORTED_ID_COUNTRY or DENIED_UNSUPPORTED_ID_TYPE.
    ``country`` and ``id_type`` are the request's values; ``errors`` holds one
    :class:`~netverify_async.ValidationIssue` (code ``country_not_accepted``, ``id_type_not_accepted`` or
    ``back_side_required``).
    """

    def __init__(
        self, errors: Sequence[ValidationIssue], *, country: str | None = None, id_type: str | None = None
    ) -> None:
        super().__init__(errors)
        self.country = country
        self.id_type = id_type

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.errors, self.country, self.id_type))


def _rebuild(
    errors: Sequence[ValidationIssue], country: str | None, id_type: str | None
) -> IdTypeNotAcceptedError:
    return IdTypeNotAcceptedError(errors, country=country, id_type=id_type)


def acceptance_problem(
    accepted: IdTypeCatalog, country: str, id_type: IdType | str, *, has_back_side: bool
) -> ValidationIssue | None:
    """Why ``accepted`` refuses a request of ``country`` and ``id_type`` (with or without a back side image),
    or None when it accepts it. ID types the lists do not document (VISA) are not checked."""
    name = _name(id_type)
    if name is None or name not in {t.value for t in LISTED_ID_TYPES}:
        return None
    entry = accepted.country(country)
    if entry is None:
        return ValidationIssue("country", "country_not_accepted", "the account accepts no ID document of this country")
    option = entry.option(name)
    if option is None:
        return ValidationIssue(
            "idType", "id_type_not_accepted", f"the account does not accept {name} documents of this country"
        )
    if option.back_side_required and not has_back_side:
        return ValidationIssue(
            "backsideImage", "back_side_required", f"the account requires the back side of {name} for this country"
        )
    return None
