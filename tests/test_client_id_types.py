"""Supported and accepted ID types: the models (from the guide's samples), the client's cache, the emulator's
endpoints, and the opt-in pre-submission check (refused before anything is billed)."""

from __future__ import annotations

import json
import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from _support import api_client, emulator_client

from netverify_async import (
    AcceptedIdTypes,
    FailureKind,
    IdType,
    IdTypeNotAcceptedError,
    Image,
    NetverifyRequest,
    RequestValidationError,
    SupportedIdTypes,
    VerificationStatus,
)
from netverify_async._idtypes import acceptance_problem, parse_accepted_id_types, parse_supported_id_types
from netverify_async.emulator import EmulatorConfig, run_emulator, sample_image

IMAGE = sample_image(1200, 850)

SUPPORTED_SAMPLE = {
    "timestamp": "2019-03-01T14:13:38.938Z",
    "supportedIdTypes": [
        {
            "countryCode": "NLD",
            "countryName": "Netherlands",
            "idTypes": [
                {"acquisitionConfig": {"backSide": True}, "idType": "ID_CARD"},
                {"acquisitionConfig": {"backSide": True}, "idType": "DRIVING_LICENSE"},
                {"acquisitionConfig": {"backSide": False}, "idType": "PASSPORT"},
            ],
        },
        {
            "countryCode": "FRO",
            "countryName": "Faroe Islands",
            "idTypes": [
                {"acquisitionConfig": {"backSide": False}, "idType": "DRIVING_LICENSE"},
                {"acquisitionConfig": {"backSide": False}, "idType": "PASSPORT"},
            ],
        },
    ],
}

ACCEPTED_SAMPLE = {
    "timestamp": "2019-03-26T14:16:14.421Z",
    "acceptedIdTypes": [
        {
            "countryCode": "GAB",
            "countryName": "Gabon",
            "idTypes": [{"acquisitionConfig": {"backSide": False}, "idType": "PASSPORT"}],
        },
        {
            "countryCode": "SGP",
            "countryName": "Singapore",
            "idTypes": [
                {"acquisitionConfig": {"backSide": True}, "idType": "ID_CARD"},
                {"acquisitionConfig": {"backSide": True}, "idType": "DRIVING_LICENSE"},
                {"acquisitionConfig": {"backSide": False}, "idType": "PASSPORT"},
            ],
        },
    ],
}


def _request(reference: str, country: str, id_type: str, *, back: bool = False) -> NetverifyRequest:
    return NetverifyRequest(
        reference,
        Image.from_bytes(IMAGE),
        country,
        id_type,
        backside_image=Image.from_bytes(IMAGE) if back else None,
    )


# ---------------------------------------------------------------------------------------------------------
# Models


def test_the_guides_samples_parse() -> None:
    supported = parse_supported_id_types(json.dumps(SUPPORTED_SAMPLE))
    assert isinstance(supported, SupportedIdTypes) and not supported.problems
    assert supported.country_codes == ("NLD", "FRO")
    nld = supported.country("nld")
    assert nld is not None and nld.country_name == "Netherlands"
    option = supported.option("NLD", IdType.ID_CARD)
    assert option is not None and option.back_side_required and option.id_type is IdType.ID_CARD
    assert ("FRO", "PASSPORT") in supported and ("FRO", "ID_CARD") not in supported
    assert supported.timestamp is not None and supported.timestamp.year == 2019

    accepted = parse_accepted_id_types(ACCEPTED_SAMPLE)
    assert isinstance(accepted, AcceptedIdTypes) and accepted.country_codes == ("GAB", "SGP")
    # the guide's table names the accepted list "supportedIdTypes": both spellings are read
    renamed = {"timestamp": ACCEPTED_SAMPLE["timestamp"], "supportedIdTypes": ACCEPTED_SAMPLE["acceptedIdTypes"]}
    assert parse_accepted_id_types(renamed).country_codes == ("GAB", "SGP")


def test_tolerant_parsing_keeps_what_it_does_not_know() -> None:
    body = {
        "acceptedIdTypes": [
            {
                "countryCode": "AUT",
                "idTypes": [
                    {"idType": "RESIDENCE_PERMIT", "acquisitionConfig": {"backSide": "TRUE", "x": 1}},
                    {"idType": "PASSPORT"},
                ],
                "region": "EU",
            }
        ],
        "next": None,
    }
    accepted = parse_accepted_id_types(body)
    aut = accepted.country("AUT")
    assert aut is not None and aut.extra == {"region": "EU"}
    assert isinstance(aut.id_types, tuple)
    odd = aut.id_types[0]
    assert odd.id_type == "RESIDENCE_PERMIT" and odd.back_side_required
    assert not aut.id_types[1].back_side_required
    assert [p.code for p in accepted.problems] == ["unknown_value"]
    assert accepted.extra == {"next": None}


def test_the_acceptance_rules() -> None:
    accepted = parse_accepted_id_types(ACCEPTED_SAMPLE)
    assert acceptance_problem(accepted, "GAB", "PASSPORT", has_back_side=False) is None
    assert acceptance_problem(accepted, "SGP", IdType.ID_CARD, has_back_side=True) is None
    codes = {
        (country, id_type, back): getattr(acceptance_problem(accepted, country, id_type, has_back_side=back), "code", None)
        for country, id_type, back in [
            ("AUT", "PASSPORT", False),
            ("GAB", "ID_CARD", True),
            ("SGP", "ID_CARD", False),
            ("AUT", "VISA", False),
        ]
    }
    assert codes == {
        ("AUT", "PASSPORT", False): "country_not_accepted",
        ("GAB", "ID_CARD", True): "id_type_not_accepted",
        ("SGP", "ID_CARD", False): "back_side_required",
        ("AUT", "VISA", False): None,  # the lists do not name VISA
    }


def test_the_error_is_a_validation_error_that_pickles() -> None:
    problem = acceptance_problem(parse_accepted_id_types(ACCEPTED_SAMPLE), "AUT", "PASSPORT", has_back_side=False)
    assert problem is not None
    error = IdTypeNotAcceptedError([problem], country="AUT", id_type="PASSPORT")
    assert isinstance(error, RequestValidationError) and error.kind is FailureKind.NOT_SENT
    copy = pickle.loads(pickle.dumps(error))
    assert copy.errors == error.errors and copy.country == "AUT" and copy.id_type == "PASSPORT"


# ---------------------------------------------------------------------------------------------------------
# The emulator's endpoints


@asynccontextmanager
async def _emulator(**settings: Any) -> AsyncIterator[Any]:
    async with run_emulator(processing_delay=0.0, **settings) as emu:
        yield emu


@pytest.mark.anyio
async def test_the_emulator_serves_both_lists_with_the_documented_shape() -> None:
    async with _emulator(accepted_id_types={"SGP": ["ID_CARD", "PASSPORT"], "GAB": {"PASSPORT": False}}) as emu:
        async with api_client(emu) as http:
            supported = await http.get("/api/netverify/v2/supportedIdTypes")
            accepted = await http.get("/api/netverify/v2/acceptedIdTypes")
            refused = await http.post("/api/netverify/v2/acceptedIdTypes")
    assert supported.status_code == accepted.status_code == 200
    assert supported.headers["content-type"].startswith("application/json")
    body = supported.json()
    assert set(body) == {"timestamp", "supportedIdTypes"}
    entry = next(c for c in body["supportedIdTypes"] if c["countryCode"] == "AUT")
    assert entry["countryName"] == "Austria"
    assert {"acquisitionConfig": {"backSide": False}, "idType": "PASSPORT"} in entry["idTypes"]
    assert any(c["countryCode"] == "XKX" for c in body["supportedIdTypes"])
    assert accepted.json()["acceptedIdTypes"] == [
        {
            "countryCode": "SGP",
            "countryName": "Singapore",
            "idTypes": [
                {"acquisitionConfig": {"backSide": True}, "idType": "ID_CARD"},
                {"acquisitionConfig": {"backSide": False}, "idType": "PASSPORT"},
            ],
        },
        {
            "countryCode": "GAB",
            "countryName": "Gabon",
            "idTypes": [{"acquisitionConfig": {"backSide": False}, "idType": "PASSPORT"}],
        },
    ]
    assert refused.status_code == 405


def test_the_emulator_config_checks_accepted_id_types() -> None:
    from netverify_async import ConfigurationError

    for bad in ({"AT": ["PASSPORT"]}, {"AUT": ["VISA"]}, "AUT", {"aut": ["PASSPORT"]}):
        with pytest.raises(ConfigurationError, match="accepted_id_types"):
            EmulatorConfig(accepted_id_types=bad)
    assert EmulatorConfig().accepted_id_types is None


# ---------------------------------------------------------------------------------------------------------
# The client: cache and pre-submission check




@pytest.mark.anyio
@pytest.mark.both_loops
async def test_both_lists_are_cached_for_their_ttl() -> None:
    async with _emulator(accepted_id_types={"AUT": ["PASSPORT"]}) as emu, emulator_client(emu) as client:
        supported = await client.supported_id_types()
        accepted = await client.accepted_id_types()
        assert ("AUT", "ID_CARD") in supported and ("AUT", "ID_CARD") not in accepted
        assert emu.stats.requests == 2
        assert await client.supported_id_types() is supported
        assert await client.accepted_id_types() is accepted
        assert emu.stats.requests == 2  # the second calls hit no server
        async with anyio.create_task_group() as tasks:  # concurrent callers share one fetch
            for _ in range(5):
                tasks.start_soon(client.accepted_id_types)
        assert emu.stats.requests == 2
        fresh = await client.accepted_id_types(refresh=True)
        assert fresh is not accepted and emu.stats.requests == 3


@pytest.mark.anyio
@pytest.mark.both_loops
async def test_the_cache_expires_after_its_ttl_and_zero_keeps_nothing() -> None:
    async with _emulator() as emu:
        async with emulator_client(emu, id_types_ttl=0.2) as client:
            await client.accepted_id_types()
            await client.accepted_id_types()
            assert emu.stats.requests == 1
            await anyio.sleep(0.3)
            await client.accepted_id_types()
            assert emu.stats.requests == 2
        async with emulator_client(emu, id_types_ttl=0) as client:
            await client.supported_id_types()
            await client.supported_id_types()
        assert emu.stats.requests == 4


def test_the_ttl_is_checked() -> None:
    from _support import client_at

    from netverify_async import ConfigurationError

    for bad in (-1, "60", True, float("nan")):
        with pytest.raises(ConfigurationError, match="id_types_ttl"):
            client_at("http://127.0.0.1:9", id_types_ttl=bad)


@pytest.mark.anyio
@pytest.mark.both_loops
async def test_without_the_check_an_unaccepted_document_is_billed_and_denied() -> None:
    async with _emulator(accepted_id_types={"AUT": ["PASSPORT"]}) as emu, emulator_client(emu) as client:
        country = await client.perform_netverify(_request("off-1", "DEU", "PASSPORT"))
        id_type = await client.perform_netverify(_request("off-2", "AUT", "DRIVING_LICENSE", back=True))
        fine = await client.perform_netverify(_request("off-3", "AUT", "PASSPORT"))
        statuses = [
            (await client.scan_document(receipt.scan_reference)).status for receipt in (country, id_type, fine)
        ]
        assert emu.stats.scans_created == 3
    assert statuses == [
        VerificationStatus.DENIED_UNSUPPORTED_ID_COUNTRY,
        VerificationStatus.DENIED_UNSUPPORTED_ID_TYPE,
        VerificationStatus.APPROVED_VERIFIED,
    ]


@pytest.mark.anyio
@pytest.mark.both_loops
async def test_with_the_check_an_unaccepted_document_is_refused_before_anything_is_billed() -> None:
    accepted = {"AUT": ["PASSPORT"], "DEU": {"ID_CARD": True}}
    async with _emulator(accepted_id_types=accepted) as emu:
        async with emulator_client(emu, check_accepted_id_types=True) as client:
            await client.accepted_id_types()  # the one query the check makes, once per TTL
            before = emu.stats.requests
            cases = [
                (_request("on-1", "FRA", "PASSPORT"), "country_not_accepted"),
                (_request("on-2", "AUT", "ID_CARD", back=True), "id_type_not_accepted"),
                (_request("on-3", "DEU", "ID_CARD"), "back_side_required"),
            ]
            for request, code in cases:
                with pytest.raises(IdTypeNotAcceptedError) as info:
                    await client.perform_netverify(request)
                assert info.value.codes == {code}
                assert info.value.country == request.country and info.value.id_type == request.id_type.value
            assert emu.stats.requests == before  # nothing reached the server, so nothing was billed
            assert emu.stats.scans_created == 0
            ok = [
                await client.perform_netverify(_request("on-4", "AUT", "PASSPORT")),
                await client.perform_netverify(_request("on-5", "DEU", "ID_CARD", back=True)),
                await client.perform_netverify(_request("on-6", "FRA", "VISA")),  # not in the lists: not checked
            ]
        assert emu.stats.scans_created == 3 and all(r.scan_reference for r in ok)


@pytest.mark.anyio
async def test_the_check_runs_in_batches_as_an_invalid_item() -> None:
    from netverify_async import OutcomeStatus

    async with _emulator(accepted_id_types={"AUT": ["PASSPORT"]}) as emu:
        async with emulator_client(emu, check_accepted_id_types=True) as client:
            requests = [_request("b-1", "AUT", "PASSPORT"), _request("b-2", "FRA", "PASSPORT")]
            async with client.submit_many(requests) as batch:
                outcomes = {outcome.merchant_id_scan_reference: outcome async for outcome in batch}
        assert outcomes["b-1"].status is OutcomeStatus.RECEIPT
        assert outcomes["b-2"].status is OutcomeStatus.INVALID
        assert isinstance(outcomes["b-2"].error, IdTypeNotAcceptedError)
        assert emu.stats.scans_created == 1
