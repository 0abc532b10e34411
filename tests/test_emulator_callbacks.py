"""Callbacks sent by the emulator: the outcome table, onAllSteps, retries, URL rules, override."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from _support import api_client

from netverify_async import ConfigurationError
from netverify_async._constants import PERFORM_NETVERIFY_PATH as PERFORM
from netverify_async._constants import SCANS_PATH as SCANS
from netverify_async.emulator import (
    EmulatorConfig,
    Outcome,
    ReceivedCallback,
    RunningEmulator,
    callback_url_problem,
    run_callback_receiver,
    run_emulator,
    sample_image,
    submission_body,
)

pytestmark = pytest.mark.anyio

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def submit(emu: RunningEmulator, reference: str, **fields: Any) -> str:
    async with api_client(emu) as client:
        response = await client.post(PERFORM, json=submission_body(reference, **fields))
    assert response.status_code == 200, response.text
    ref: str = response.json()["jumioIdScanReference"]
    return ref


async def callback_for(reference: str, **fields: Any) -> tuple[str, ReceivedCallback]:
    async with (
        run_callback_receiver() as receiver,
        run_emulator(processing_delay=0, allow_http_callbacks=True) as emu,
    ):
        ref = await submit(emu, reference, callbackUrl=receiver.url, **fields)
        [callback] = await receiver.wait_for(1)
    return ref, callback


OUTCOMES = [
    ("order#approved", "APPROVED_VERIFIED", "SUCCESS"),
    ("order", "APPROVED_VERIFIED", "SUCCESS"),
    ("order#fraud", "DENIED_FRAUD", "ERROR"),
    ("order#unsupported-type", "DENIED_UNSUPPORTED_ID_TYPE", "ERROR"),
    ("order#unsupported-country", "DENIED_UNSUPPORTED_ID_COUNTRY", "ERROR"),
    ("order#unreadable", "ERROR_NOT_READABLE_ID", "ERROR"),
    ("order#no-id", "NO_ID_UPLOADED", "ERROR"),
    ("order#DENIED_FRAUD", "DENIED_FRAUD", "ERROR"),
]


@pytest.mark.parametrize(("reference", "status", "scan_status"), OUTCOMES)
async def test_the_merchant_reference_chooses_the_outcome(
    reference: str, status: str, scan_status: str
) -> None:
    ref, callback = await callback_for(reference)
    form = callback.form

    assert callback.content_type == "application/x-www-form-urlencoded"
    assert callback.path == "/callback"
    assert form["callBackType"] == "NETVERIFYID"
    assert form["jumioIdScanReference"] == ref
    assert form["verificationStatus"] == status
    assert form["idScanStatus"] == scan_status
    assert form["idScanSource"] == "API"
    assert form["merchantIdScanReference"] == reference
    assert TIMESTAMP.fullmatch(form["transactionDate"])
    assert TIMESTAMP.fullmatch(form["callbackDate"])
    checks = {k: v for k, v in form.items() if k.startswith("idCheck")}
    assert len(checks) == 7
    assert set(checks.values()) == ({"OK"} if status == "APPROVED_VERIFIED" else {"N/A"})
    if status == "NO_ID_UPLOADED":
        assert "idType" not in form
    else:
        assert form["idType"] == "PASSPORT"
        assert form["idCountry"] == "AUT"
        assert form["idScanImage"].endswith(f"{SCANS}/{ref}/images/front")


async def test_fraud_carries_a_reject_reason_with_a_list_of_details() -> None:
    _, callback = await callback_for("order#fraud")
    reason = json.loads(callback.form["rejectReason"])
    assert reason["rejectReasonCode"] == "100"
    assert reason["rejectReasonDescription"] == "MANIPULATED_DOCUMENT"
    assert reason["rejectReasonDetails"] == [
        {"detailsCode": "1001", "detailsDescription": "PHOTO"},
        {"detailsCode": "1004", "detailsDescription": "DOB"},
    ]
    assert "identityVerification" not in callback.form
    assert "idFirstName" not in callback.form


async def test_unreadable_carries_a_reject_reason_with_one_detail_object() -> None:
    _, callback = await callback_for("order#unreadable")
    reason = json.loads(callback.form["rejectReason"])
    assert reason["rejectReasonCode"] == "200"
    assert reason["rejectReasonDetails"] == {"detailsCode": "2001", "detailsDescription": "BLURRED"}


@pytest.mark.parametrize(
    ("reference", "identity"),
    [
        ("order", {"similarity": "MATCH", "validity": True}),
        ("order#face-mismatch", {"similarity": "NO_MATCH", "validity": True}),
        ("order#not-live", {"similarity": "MATCH", "validity": False, "reason": "LIVENESS_FAILED"}),
    ],
)
async def test_identity_verification_comes_with_a_face_image(
    reference: str, identity: dict[str, Any]
) -> None:
    ref, callback = await callback_for(reference, faceImage=sample_image(), faceImageMimeType="image/jpeg")
    assert callback.form["verificationStatus"] == "APPROVED_VERIFIED"
    assert json.loads(callback.form["identityVerification"]) == identity
    assert callback.form["idScanImageFace"].endswith(f"/scans/{ref}/images/face")


async def test_no_identity_verification_without_face_match() -> None:
    _, plain = await callback_for("order")
    assert "identityVerification" not in plain.form
    _, not_enabled = await callback_for(
        "order",
        faceImage=sample_image(),
        faceImageMimeType="image/jpeg",
        enabledFields="idNumber,idFirstName",
    )
    assert "identityVerification" not in not_enabled.form


async def test_approved_scan_reports_extracted_data_and_address_when_enabled() -> None:
    _, callback = await callback_for(
        "order", lastName="MUSTER", enabledFields="idNumber,idFirstName,idLastName,idDob,idAddress"
    )
    form = callback.form
    assert form["idLastName"] == "MUSTER"
    assert {"idNumber", "idFirstName", "idDob"} <= set(form)
    assert "idExpiry" not in form  # not enabled
    address = json.loads(form["idAddress"])
    assert set(address) >= {"line1", "city", "postalCode", "country"}


async def test_customer_id_can_choose_the_outcome_too() -> None:
    _, callback = await callback_for("order", customerId="customer-7#unsupported-country")
    assert callback.form["verificationStatus"] == "DENIED_UNSUPPORTED_ID_COUNTRY"
    assert callback.form["customerId"] == "customer-7#unsupported-country"


async def test_default_outcome_applies_without_a_keyword() -> None:
    async with (
        run_callback_receiver() as receiver,
        run_emulator(processing_delay=0, allow_http_callbacks=True, default_outcome="unreadable") as emu,
    ):
        await submit(emu, "order#no-such-keyword", callbackUrl=receiver.url)
        [callback] = await receiver.wait_for(1)
    assert callback.form["verificationStatus"] == "ERROR_NOT_READABLE_ID"


async def test_on_all_steps_sends_an_extra_callback_when_the_images_arrive() -> None:
    async with (
        run_callback_receiver() as receiver,
        run_emulator(processing_delay=0.2, allow_http_callbacks=True) as emu,
    ):
        ref = await submit(emu, "order", callbackUrl=receiver.url, callbackGranularity="onAllSteps")
        first, final = await receiver.wait_for(2)
        log = await emu.wait_for_callbacks(2)
    assert first.form["jumioIdScanReference"] == ref
    assert first.form["idScanStatus"] == "PENDING"
    assert "verificationStatus" not in first.form
    assert final.form["verificationStatus"] == "APPROVED_VERIFIED"
    assert [(r.kind, r.result) for r in log] == [("images_received", "delivered"), ("final", "delivered")]


async def test_on_finish_sends_one_callback() -> None:
    async with (
        run_callback_receiver() as receiver,
        run_emulator(processing_delay=0, allow_http_callbacks=True) as emu,
    ):
        await submit(emu, "order", callbackUrl=receiver.url, callbackGranularity="onFinish")
        await receiver.wait_for(1)
        await submit(emu, "second", callbackUrl=receiver.url)
        received = await receiver.wait_for(2)
    assert [r.form["merchantIdScanReference"] for r in received] == ["order", "second"]


async def test_failed_delivery_is_retried_with_backoff() -> None:
    async with (
        run_callback_receiver(fail_first=2) as receiver,
        run_emulator(processing_delay=0, allow_http_callbacks=True, callback_backoff=0.01) as emu,
    ):
        await submit(emu, "order", callbackUrl=receiver.url)
        await receiver.wait_for(1)
        assert [r.answered for r in receiver.received] == [500, 500, 200]
        [record] = await emu.wait_for_callbacks(1)
        stats = emu.stats
    assert (record.result, record.attempts, record.status_code) == ("delivered", 3, 200)
    assert (stats.callbacks_delivered, stats.callbacks_failed, stats.callback_attempts) == (1, 0, 3)


async def test_delivery_gives_up_after_the_configured_retries() -> None:
    async with (
        run_callback_receiver(fail_first=100) as receiver,
        run_emulator(
            processing_delay=0, allow_http_callbacks=True, callback_retries=2, callback_backoff=0.01
        ) as emu,
    ):
        await submit(emu, "order", callbackUrl=receiver.url)
        [record] = await emu.wait_for_callbacks(1)
        assert len(receiver.received) == 3
    assert (record.result, record.attempts, record.reason) == ("failed", 3, "HTTP 500")
    assert emu.stats.callbacks_failed == 1


async def test_unreachable_receiver_counts_as_failed() -> None:
    async with run_callback_receiver() as receiver:
        closed_url = receiver.url  # the receiver stops before the callback is due
    async with run_emulator(
        processing_delay=0.1, allow_http_callbacks=True, callback_retries=1, callback_backoff=0.01
    ) as emu:
        await submit(emu, "order", callbackUrl=closed_url)
        [record] = await emu.wait_for_callbacks(1)
    assert record.result == "failed"
    assert record.status_code is None
    assert record.reason == "ConnectError"


async def test_override_sends_every_callback_to_one_url() -> None:
    async with run_callback_receiver() as receiver:
        async with run_emulator(
            processing_delay=0, allow_http_callbacks=True, callback_url_override=receiver.url
        ) as emu:
            ref = await submit(emu, "no-callback-url-in-request")
            [callback] = await receiver.wait_for(1)
    assert callback.form["jumioIdScanReference"] == ref


async def test_override_must_follow_the_url_rules() -> None:
    with pytest.raises(ConfigurationError, match="callback_url_override"):
        EmulatorConfig(callback_url_override="http://127.0.0.1:8000/cb")
    assert EmulatorConfig(callback_url_override="http://127.0.0.1:8000/cb", allow_http_callbacks=True)


async def test_external_callback_hosts_are_not_called_by_default() -> None:
    async with run_emulator(processing_delay=0) as emu:
        await submit(emu, "order", callbackUrl="https://callbacks.example.com/jumio")
        [record] = await emu.wait_for_callbacks(1)
    assert record.result == "skipped"
    assert record.attempts == 0
    assert "deliver_external_callbacks" in (record.reason or "")
    assert emu.stats.callbacks_skipped == 1


async def test_a_scan_deleted_before_processing_gets_no_final_callback() -> None:
    async with (
        run_callback_receiver() as receiver,
        run_emulator(processing_delay=1.5, allow_http_callbacks=True) as emu,
        api_client(emu) as client,
    ):
        ref = await submit(emu, "order", callbackUrl=receiver.url)
        assert (await client.delete(f"{SCANS}/{ref}")).status_code == 200
        [record] = await emu.wait_for_callbacks(1)
        assert receiver.received == []
    assert record.reason == "scan deleted"


@pytest.mark.parametrize(
    ("url", "allow_http", "problem"),
    [
        ("https://example.com/callback", False, None),
        ("https://example.com/callback", True, None),
        ("http://example.com/callback", False, "must use https"),
        ("http://example.com/callback", True, "must use https"),
        ("https://example.com:8443/callback", False, "must not name a port"),
        ("https://93.184.216.34/callback", False, "must not be an IP address"),
        ("https://example.com/callback?user=1", False, "must not have a query"),
        ("https://example.com/callback#top", False, "must not have a fragment"),
        ("http://127.0.0.1:8000/callback", False, "must use https"),
        ("http://127.0.0.1:8000/callback", True, None),
        ("http://localhost:8000/callback?x=1", True, None),
        ("http://[::1]:8000/callback", True, None),
        ("https://127.0.0.1/callback", False, "must not be an IP address"),
        ("not a url", False, "has no host"),
    ],
)
def test_callback_url_rules(url: str, allow_http: bool, problem: str | None) -> None:
    found = callback_url_problem(url, allow_http=allow_http)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


def test_outcome_names_and_statuses() -> None:
    assert Outcome.parse("Fraud") is Outcome.FRAUD
    assert Outcome.parse("DENIED_UNSUPPORTED_ID_TYPE") is Outcome.UNSUPPORTED_TYPE
    assert Outcome.parse("APPROVED_VERIFIED") is Outcome.APPROVED
    assert Outcome.NO_ID.transaction_status == "FAILED"
    assert Outcome.NOT_LIVE.verification_status == "APPROVED_VERIFIED"
    with pytest.raises(ValueError, match="unknown outcome"):
        Outcome.parse("maybe")
    with pytest.raises(ConfigurationError, match="default_outcome"):
        EmulatorConfig(default_outcome="maybe")
