"""performNetverify on the emulator over real loopback HTTP: 200, 403, 400, 405, 413."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from _support import api_client

from netverify_async._constants import PERFORM_NETVERIFY_PATH as PERFORM
from netverify_async.emulator import API_HEADERS, RunningEmulator, run_emulator, sample_image, submission_body

pytestmark = pytest.mark.anyio

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def assert_jumio_headers(response: httpx.Response) -> None:
    assert uuid.UUID(response.headers["x-trackingid"]).version == 4
    assert response.headers["server"] == "Apache-Coyote/1.1"


async def test_valid_submission_gets_a_receipt_and_creates_a_scan(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    response = await client.post(PERFORM, json=submission_body("order-1"))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"timestamp", "jumioIdScanReference"}
    assert TIMESTAMP.fullmatch(body["timestamp"])
    assert uuid.UUID(body["jumioIdScanReference"]).version == 4
    assert_jumio_headers(response)
    stats = emu.stats
    assert stats.scans_created == 1
    assert stats.scans_by_merchant_reference == {"order-1": (body["jumioIdScanReference"],)}
    assert stats.status_counts == {200: 1}


async def test_each_submission_creates_its_own_scan_and_duplicates_are_listed(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    refs = []
    for reference in ("same", "same", "other"):
        response = await client.post(PERFORM, json=submission_body(reference))
        refs.append(response.json()["jumioIdScanReference"])

    assert len(set(refs)) == 3
    assert emu.stats.duplicates == {"same": (refs[0], refs[1])}


def _basic(token: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:{secret}".encode()).decode()


FORBIDDEN_CASES = {
    "no authorization": {"Authorization": None},
    "wrong secret": {"Authorization": _basic("emulator-api-token", "wrong")},
    "wrong token": {"Authorization": _basic("someone-else", "emulator-api-secret")},
    "not basic": {"Authorization": "Bearer emulator-api-token"},
    "garbage credentials": {"Authorization": "Basic ###"},
    "no user agent": {"User-Agent": None},
    "library user agent": {"User-Agent": "python-httpx/0.28.1"},
    "user agent without business": {"User-Agent": "SampleApp/1.0.1"},
    "user agent without version": {"User-Agent": "Example Corp SampleApp"},
    "no accept": {"Accept": None},
    "accept anything": {"Accept": "*/*"},
    "accept xml": {"Accept": "application/xml"},
    "content type form": {"Content-Type": "application/x-www-form-urlencoded"},
    "content type text": {"Content-Type": "text/plain"},
}


@pytest.mark.parametrize("change", FORBIDDEN_CASES.values(), ids=FORBIDDEN_CASES.keys())
async def test_missing_or_suspicious_headers_are_forbidden(
    emu: RunningEmulator, change: dict[str, str | None]
) -> None:
    headers = {
        **API_HEADERS,
        "Content-Type": "application/json",
        "Authorization": _basic(emu.api_token, emu.api_secret),
        **change,
    }
    content = json.dumps(submission_body()).encode()
    async with httpx.AsyncClient(base_url=emu.base_url) as raw:
        request = raw.build_request("POST", PERFORM, content=content)
        for name, value in headers.items():
            if value is None:
                request.headers.pop(name, None)
            else:
                request.headers[name] = value
        if "User-Agent" in change and change["User-Agent"] is None:
            request.headers.pop("User-Agent", None)
        response = await raw.send(request)

    assert response.status_code == 403
    body = response.json()
    assert body["httpStatus"] == "403"
    assert body["message"].startswith("Forbidden: ")
    assert body["requestURI"] == f"{emu.base_url}{PERFORM}"
    assert emu.api_secret not in response.text
    assert_jumio_headers(response)
    assert emu.stats.scans_created == 0


async def test_lower_case_basic_scheme_is_accepted(emu: RunningEmulator) -> None:
    auth = "basic " + base64.b64encode(f"{emu.api_token}:{emu.api_secret}".encode()).decode()
    async with httpx.AsyncClient(base_url=emu.base_url, headers=API_HEADERS) as raw:
        response = await raw.post(PERFORM, json=submission_body(), headers={"Authorization": auth})
    assert response.status_code == 200


async def test_chunked_upload_without_content_length_is_forbidden(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    content = json.dumps(submission_body()).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield content[:100]
        yield content[100:]

    response = await client.post(PERFORM, content=chunks(), headers={"Content-Type": "application/json"})

    assert "content-length" not in response.request.headers
    assert response.status_code == 403
    assert "Content-Length" in response.json()["message"]
    assert emu.stats.scans_created == 0


def _errors(response: httpx.Response) -> dict[str, set[str]]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["httpStatus"] == "400"
    assert body["message"].startswith("Bad Request: ")
    assert body["requestURI"].endswith(PERFORM)
    found: dict[str, set[str]] = {}
    for error in body["errors"]:
        assert set(error) == {"field", "code", "message"}
        assert error["message"]
        found.setdefault(error["field"], set()).add(error["code"])
    return found


async def test_body_that_is_not_json_is_a_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.post(PERFORM, content=b"{not json", headers={"Content-Type": "application/json"})
    assert _errors(response) == {"body": {"invalid_json"}}


async def test_json_that_is_not_an_object_is_a_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.post(PERFORM, json=[1, 2])
    assert _errors(response) == {"body": {"type"}}


async def test_every_missing_required_field_is_named(client: httpx.AsyncClient, emu: RunningEmulator) -> None:
    response = await client.post(PERFORM, json={})
    errors = _errors(response)
    assert {"merchantIdScanReference", "frontsideImage", "country", "idType"} <= set(errors)
    assert emu.stats.scans_created == 0


async def test_field_rules_and_image_rules_are_reported_together(client: httpx.AsyncClient) -> None:
    body = submission_body(country="XXX", frontsideImage=sample_image(200, 150))
    errors = _errors(await client.post(PERFORM, json=body))
    assert "country" in errors
    assert errors["frontsideImage"] == {"too_small"}


@pytest.mark.parametrize(
    ("image", "mime", "code"),
    [
        (sample_image(200, 200), "image/jpeg", "too_small"),
        (sample_image(8000, 20), "image/jpeg", "too_large_dimensions"),
        (sample_image(400, 300, "GIF"), None, "unsupported_format"),
        (sample_image(400, 300, "PNG"), "image/jpeg", "mime_mismatch"),
    ],
    ids=["too small", "too many pixels", "gif", "png declared as jpeg"],
)
async def test_bad_images_are_refused_with_the_preflight_code(
    client: httpx.AsyncClient, emu: RunningEmulator, image: bytes, mime: str | None, code: str
) -> None:
    body = submission_body(frontsideImage=image, frontsideImageMimeType=mime)
    errors = _errors(await client.post(PERFORM, json=body))
    assert code in errors["frontsideImage"]
    assert emu.stats.scans_created == 0


async def test_image_over_15_megabytes_is_refused(client: httpx.AsyncClient) -> None:
    oversized = sample_image() + b"\0" * 15_000_000
    errors = _errors(await client.post(PERFORM, json=submission_body(frontsideImage=oversized)))
    assert "file_too_large" in errors["frontsideImage"]


async def test_png_declared_as_png_is_accepted(client: httpx.AsyncClient) -> None:
    body = submission_body(frontsideImage=sample_image(400, 300, "PNG"), frontsideImageMimeType="image/png")
    response = await client.post(PERFORM, json=body)
    assert response.status_code == 200, response.text


async def test_base64_that_is_not_strict_is_refused(client: httpx.AsyncClient) -> None:
    body = submission_body()
    body["frontsideImage"] = body["frontsideImage"][:-2] + " \n"
    errors = _errors(await client.post(PERFORM, json=body))
    assert errors["frontsideImage"] == {"invalid_base64"}


async def test_back_and_face_images_are_checked_too(client: httpx.AsyncClient) -> None:
    body = submission_body(backsideImage=sample_image(100, 100), faceImage=sample_image(100, 100))
    errors = _errors(await client.post(PERFORM, json=body))
    assert errors["backsideImage"] == {"too_small"}
    assert errors["faceImage"] == {"too_small"}


async def test_loopback_http_callback_url_is_refused_unless_allowed(client: httpx.AsyncClient) -> None:
    body = submission_body(callbackUrl="http://127.0.0.1:9/callback")
    errors = _errors(await client.post(PERFORM, json=body))
    assert "callbackUrl" in errors

    async with (
        run_emulator(processing_delay=0, allow_http_callbacks=True) as permissive,
        api_client(permissive) as c,
    ):
        response = await c.post(PERFORM, json=body)
        assert response.status_code == 200, response.text
        assert permissive.scans[0]["callbackUrl"] == "http://127.0.0.1:9/callback"


async def test_body_over_the_configured_limit_is_refused_without_a_scan() -> None:
    async with (
        run_emulator(processing_delay=0, max_body_bytes=1000) as emu,
        api_client(emu) as c,
    ):
        response = await c.post(PERFORM, json=submission_body())
        assert response.status_code == 413
        assert response.json()["httpStatus"] == "413"
        assert emu.stats.scans_created == 0


async def test_image_checks_can_be_switched_off() -> None:
    async with (
        run_emulator(processing_delay=0, check_images=False) as emu,
        api_client(emu) as c,
    ):
        response = await c.post(PERFORM, json=submission_body(frontsideImage=sample_image(50, 50)))
        assert response.status_code == 200


async def test_wrong_method_and_unknown_path(client: httpx.AsyncClient, emu: RunningEmulator) -> None:
    response = await client.get(PERFORM)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert_jumio_headers(response)

    response = await client.get("/api/netverify/v2/nothing")
    assert response.status_code == 404
    assert response.json() == {
        "httpStatus": "404",
        "message": "Not found",
        "requestURI": f"{emu.base_url}/api/netverify/v2/nothing",
    }
    assert_jumio_headers(response)
