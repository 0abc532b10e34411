"""Retrieval and delete APIs of the emulator over real loopback HTTP."""

from __future__ import annotations

import re
import time
import uuid

import anyio
import httpx
import pytest
from _support import api_client

from netverify_async._constants import PERFORM_NETVERIFY_PATH as PERFORM
from netverify_async._constants import SCANS_PATH as SCANS
from netverify_async.emulator import API_HEADERS, RunningEmulator, run_emulator, sample_image, submission_body

pytestmark = pytest.mark.anyio

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def submit(client: httpx.AsyncClient, reference: str = "order-1", **fields: object) -> str:
    response = await client.post(PERFORM, json=submission_body(reference, **fields))
    assert response.status_code == 200, response.text
    ref: str = response.json()["jumioIdScanReference"]
    return ref


async def test_status_is_pending_until_the_processing_delay_has_passed() -> None:
    # polls until DONE (no fixed sleep to race the delay); the clock is read before the submission, so the scan
    # was created after ``started``: a DONE seen before ``started + delay`` would be too early
    delay = 1.0
    async with run_emulator(processing_delay=delay) as emu, api_client(emu) as client:
        started = time.monotonic()
        ref = await submit(client)
        first = await client.get(f"{SCANS}/{ref}")
        with anyio.fail_after(20):
            while (await client.get(f"{SCANS}/{ref}")).json()["status"] != "DONE":
                await anyio.sleep(0.02)
        done_after = time.monotonic() - started

    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"timestamp", "scanReference", "status"}
    assert TIMESTAMP.fullmatch(body["timestamp"])
    assert body["scanReference"] == ref
    assert body["status"] == "PENDING"
    assert done_after >= delay


async def test_scan_without_an_id_ends_failed(client: httpx.AsyncClient) -> None:
    ref = await submit(client, "order-2#no-id")
    assert (await client.get(f"{SCANS}/{ref}")).json()["status"] == "FAILED"
    data = (await client.get(f"{SCANS}/{ref}/data")).json()
    assert data["document"] == {"status": "NO_ID_UPLOADED"}
    assert data["transaction"]["status"] == "FAILED"


async def test_details_of_an_approved_scan(client: httpx.AsyncClient) -> None:
    ref = await submit(
        client,
        "order-3",
        customerId="customer-9",
        merchantReportingCriteria="campaign-a",
        faceImage=sample_image(),
        faceImageMimeType="image/jpeg",
        firstName="EVA",
    )
    response = await client.get(f"{SCANS}/{ref}/data")

    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"timestamp", "scanReference", "document", "transaction", "verification"}
    assert data["scanReference"] == ref
    document = data["document"]
    assert document["status"] == "APPROVED_VERIFIED"
    assert document["type"] == "PASSPORT"
    assert document["issuingCountry"] == "AUT"
    assert document["firstName"] == "EVA"  # echoed from the request
    assert {"lastName", "dob", "expiry", "number"} <= set(document)
    transaction = data["transaction"]
    assert transaction["source"] == "API"
    assert transaction["status"] == "DONE"
    assert transaction["merchantScanReference"] == "order-3"
    assert transaction["customerId"] == "customer-9"
    assert transaction["merchantReportingCriteria"] == "campaign-a"
    assert TIMESTAMP.fullmatch(transaction["date"])
    verification = data["verification"]
    assert verification["mrzCheck"] == "OK"
    assert verification["identityVerification"] == {"similarity": "MATCH", "validity": "true"}
    assert "rejectReason" not in verification


async def test_details_of_a_fraud_list_the_reject_reason_details(client: httpx.AsyncClient) -> None:
    ref = await submit(client, "order-4#fraud")
    data = (await client.get(f"{SCANS}/{ref}/data")).json()

    assert data["document"]["status"] == "DENIED_FRAUD"
    assert "firstName" not in data["document"]
    reason = data["verification"]["rejectReason"]
    assert reason["rejectReasonCode"] == "100"
    assert reason["rejectReasonDescription"] == "MANIPULATED_DOCUMENT"
    assert [d["detailsCode"] for d in reason["rejectReasonDetails"]] == ["1001", "1004"]


async def test_single_reject_reason_detail_is_an_object(client: httpx.AsyncClient) -> None:
    ref = await submit(client, "order-5#unreadable")
    reason = (await client.get(f"{SCANS}/{ref}/data")).json()["verification"]["rejectReason"]
    assert reason["rejectReasonCode"] == "200"
    assert reason["rejectReasonDetails"] == {"detailsCode": "2001", "detailsDescription": "BLURRED"}


async def test_unsupported_type_reports_type_unsupported(client: httpx.AsyncClient) -> None:
    ref = await submit(client, "order-6#unsupported-type")
    document = (await client.get(f"{SCANS}/{ref}/data")).json()["document"]
    assert document["status"] == "DENIED_UNSUPPORTED_ID_TYPE"
    assert document["type"] == "UNSUPPORTED"


async def test_details_while_pending_have_no_verification() -> None:
    async with (
        run_emulator(processing_delay=60) as emu,
        api_client(emu) as client,
    ):
        ref = await submit(client)
        data = (await client.get(f"{SCANS}/{ref}/data")).json()
    assert data["transaction"]["status"] == "PENDING"
    assert "verification" not in data
    assert "status" not in data["document"]


@pytest.mark.parametrize("part", ["document", "transaction", "verification"])
async def test_each_part_of_the_details_on_its_own(client: httpx.AsyncClient, part: str) -> None:
    ref = await submit(client)
    whole = (await client.get(f"{SCANS}/{ref}/data")).json()
    response = await client.get(f"{SCANS}/{ref}/data/{part}")

    assert response.status_code == 200
    body = response.json()
    assert body.pop("scanReference") == ref
    assert TIMESTAMP.fullmatch(body.pop("timestamp"))
    assert body == whole[part]


async def test_stored_images_are_listed_and_served(client: httpx.AsyncClient, emu: RunningEmulator) -> None:
    back = sample_image(500, 320, "PNG")
    ref = await submit(client, backsideImage=back, backsideImageMimeType="image/png")

    listing = (await client.get(f"{SCANS}/{ref}/images")).json()
    assert {i["classifier"]: i["href"] for i in listing["images"]} == {
        "back": f"{emu.base_url}{SCANS}/{ref}/images/back",
        "front": f"{emu.base_url}{SCANS}/{ref}/images/front",
    }
    front = await client.get(f"{SCANS}/{ref}/images/front", headers={"Accept": "image/jpeg, image/png"})
    assert front.status_code == 200
    assert front.headers["content-type"] == "image/jpeg"
    assert front.content == sample_image()
    back_response = await client.get(f"{SCANS}/{ref}/images/back", headers={"Accept": "image/png"})
    assert back_response.status_code == 200
    assert back_response.headers["content-type"] == "image/png"
    assert back_response.content == back
    # the sample requests of the guide send no Accept header for images at all
    del client.headers["Accept"]
    assert (await client.get(f"{SCANS}/{ref}/images/front")).status_code == 200
    missing = await client.get(f"{SCANS}/{ref}/images/face")
    assert missing.status_code == 404


@pytest.mark.parametrize("suffix", ["", "/data", "/data/document", "/images", "/images/front"])
async def test_unknown_scan_gets_jumios_404(
    client: httpx.AsyncClient, emu: RunningEmulator, suffix: str
) -> None:
    ref = str(uuid.uuid4())
    accept = "image/jpeg" if suffix == "/images/front" else "application/json"
    response = await client.get(f"{SCANS}/{ref}{suffix}", headers={"Accept": accept})

    assert response.status_code == 404
    assert response.json() == {
        "httpStatus": "404",
        "message": f"Not found: Scan not found for {ref}",
        "requestURI": f"{emu.base_url}{SCANS}/{ref}{suffix}",
    }
    assert uuid.UUID(response.headers["x-trackingid"]).version == 4
    assert response.headers["server"] == "Apache-Coyote/1.1"


async def test_tracking_ids_differ_between_responses(client: httpx.AsyncClient) -> None:
    ids = {(await client.get(f"{SCANS}/unknown")).headers["x-trackingid"] for _ in range(3)}
    assert len(ids) == 3


async def test_delete_removes_the_scan(client: httpx.AsyncClient, emu: RunningEmulator) -> None:
    ref = await submit(client)
    response = await client.delete(f"{SCANS}/{ref}")

    assert response.status_code == 200
    assert response.content == b""
    assert (await client.get(f"{SCANS}/{ref}")).status_code == 404
    image = await client.get(f"{SCANS}/{ref}/images/front", headers={"Accept": "image/jpeg"})
    assert image.status_code == 404
    assert (await client.delete(f"{SCANS}/{ref}")).status_code == 404
    assert emu.stats.scans_deleted == 1


async def test_delete_accepts_a_trailing_slash(client: httpx.AsyncClient) -> None:
    ref = await submit(client)
    assert (await client.delete(f"{SCANS}/{ref}/")).status_code == 200


async def test_retrieval_needs_the_same_credentials_and_headers(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    ref = await submit(client)
    async with httpx.AsyncClient(base_url=emu.base_url, headers=API_HEADERS) as anonymous:
        assert (await anonymous.get(f"{SCANS}/{ref}")).status_code == 403
        assert (await anonymous.delete(f"{SCANS}/{ref}")).status_code == 403
    assert (await client.get(f"{SCANS}/{ref}", headers={"User-Agent": "curl/8.5.0"})).status_code == 403
    assert (await client.get(f"{SCANS}/{ref}", headers={"Accept": "text/html"})).status_code == 403
    forbidden = await client.get(f"{SCANS}/{ref}/images/front", headers={"Accept": "text/html"})
    assert forbidden.status_code == 403
    assert (await client.get(f"{SCANS}/{ref}")).status_code == 200


async def test_wrong_method_on_a_scan(client: httpx.AsyncClient) -> None:
    ref = await submit(client)
    response = await client.post(f"{SCANS}/{ref}/data")
    assert response.status_code == 405
