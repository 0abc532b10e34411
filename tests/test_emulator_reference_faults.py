"""Faults aimed at one merchant reference (``Faults.by_reference``), and a callback receiver that feeds a journal:
the lost answer whose callback settles it, over real loopback HTTP."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import httpx
import pytest

from netverify_async import (
    ConfigurationError,
    NetverifyClient,
    OutcomeStatus,
    SqliteJournal,
    SubmissionOutcomeUnknown,
)
from netverify_async._journal import JournalState
from netverify_async.emulator import Faults, run_callback_receiver, run_emulator
from netverify_async.emulator._cli import add_arguments, config_from_args

pytestmark = pytest.mark.anyio

USER_AGENT = "Local Emulator ReferenceFaults/1.0"


def client_for(emu: Any) -> NetverifyClient:
    return NetverifyClient(
        api_token=emu.api_token,
        api_secret=emu.api_secret,
        user_agent=USER_AGENT,
        base_url=emu.base_url,
        rate_limit=None,
        retrieval_rate_limit=None,
    )


@pytest.mark.parametrize("action", ["drop", "502"])
async def test_the_aimed_reference_gets_its_scan_and_loses_its_answer_once(
    action: str, make_request: Any, tmp_path: Path
) -> None:
    refs = [f"ref-{i}" for i in range(6)]
    async with (
        SqliteJournal(tmp_path / "j") as journal,
        run_callback_receiver(journal=journal) as receiver,
        run_emulator(
            processing_delay=0.2,
            allow_http_callbacks=True,
            callback_url_override=receiver.url,
            by_reference={"ref-4": action},
        ) as emu,
        client_for(emu) as client,
    ):
        batch = client.submit_many([make_request(ref) for ref in refs], concurrency=3, journal=journal)
        async with batch:
            outcomes = {o.merchant_id_scan_reference: o async for o in batch}
        assert {ref for ref, o in outcomes.items() if o.status is OutcomeStatus.UNKNOWN} == {"ref-4"}
        assert isinstance(outcomes["ref-4"].error, SubmissionOutcomeUnknown)
        assert outcomes["ref-4"].attempts == 1  # an ambiguous failure of a submission is not resent
        assert all(o.status is OutcomeStatus.RECEIPT for ref, o in outcomes.items() if ref != "ref-4")

        stats = emu.stats
        assert stats.scans_created == len(refs) and not stats.duplicates  # the lost answer's scan exists
        assert stats.faults_injected == {action: 1}

        deliveries = await receiver.wait_for(len(refs))
        effects = {d.form["merchantIdScanReference"]: d.effect for d in deliveries}
        assert effects["ref-4"] == "settled"
        assert {effects[ref] for ref in refs if ref != "ref-4"} <= {"recorded", "settled"}
        entry = await journal.get("ref-4")
        assert entry is not None and entry.state is JournalState.RECEIPT and entry.reconciled_at is not None
        scan = next(s for s in emu.scans if s["merchantIdScanReference"] == "ref-4")
        assert entry.scan_reference == scan["scanReference"]
        assert entry.scans[0].result is not None  # the callback's verification result is stored with it

        # once: the same reference again gets its answer
        receipt = await client.perform_netverify(make_request("ref-4"))
        assert receipt.scan_reference != entry.scan_reference
        assert emu.stats.faults_injected == {action: 1}


async def test_an_aimed_fault_overrides_the_action_drawn_for_that_request(make_request: Any) -> None:
    # every request of the sequence is "ok"; the aimed one still loses its answer, the others do not
    async with run_emulator(processing_delay=0.0, sequence=["ok"] * 4, by_reference={"b": "drop"}) as emu:
        async with client_for(emu) as client:
            assert (await client.perform_netverify(make_request("a"))).scan_reference
            with pytest.raises(SubmissionOutcomeUnknown):
                await client.perform_netverify(make_request("b"))
            assert (await client.perform_netverify(make_request("c"))).scan_reference
        assert emu.stats.scans_created == 3


async def test_a_refused_submission_does_not_use_up_the_aimed_fault(make_request: Any) -> None:
    # a submission refused before processing (here: 429 from the sequence) creates no scan; the retry that
    # creates it is the one that loses its answer
    async with run_emulator(processing_delay=0.0, sequence=["429"], by_reference={"x": "drop"}) as emu:
        async with client_for(emu) as client:
            with pytest.raises(SubmissionOutcomeUnknown):
                await client.perform_netverify(make_request("x"))
        assert emu.stats.scans_created == 1
        assert emu.stats.faults_injected == {"429": 1, "drop": 1}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"r": "429"}, "cannot be aimed at a reference"),
        ({"r": "503"}, "cannot be aimed at a reference"),
        ({"r": "ok"}, "cannot be aimed at a reference"),
        ("r=drop", "must map merchant references to actions"),
        ([("r",)], "each entry is (merchant reference, action)"),
    ],
)
async def test_aimed_faults_are_checked(value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=r"Faults\.by_reference") as info:
        Faults(by_reference=value)
    assert message in str(info.value)


async def test_aimed_faults_round_trip_through_the_admin_form() -> None:
    faults = Faults(by_reference={"b": "slow", "a": "drop"})
    assert faults.by_reference == (("a", "drop"), ("b", "slow"))
    assert faults.to_dict()["by_reference"] == {"a": "drop", "b": "slow"}
    assert Faults.from_dict(faults.to_dict()) == faults
    assert Faults().to_dict()["by_reference"] == {}


async def test_aimed_faults_can_be_set_over_the_admin_endpoint(make_request: Any) -> None:
    async with run_emulator(processing_delay=0.0) as emu:
        async with httpx.AsyncClient(base_url=emu.base_url) as admin:
            answer = await admin.post("/__emulator/faults", json={"by_reference": {"late": "drop"}})
            assert answer.status_code == 200, answer.text
        async with client_for(emu) as client:
            with pytest.raises(SubmissionOutcomeUnknown):
                await client.perform_netverify(make_request("late"))


def test_the_emulator_command_line_takes_aimed_faults() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--fault-reference", "ref=7=drop", "--fault-reference", "other=504"])
    assert config_from_args(args).faults.by_reference == (("other", "504"), ("ref=7", "drop"))
    with pytest.raises(SystemExit):
        parser.parse_args(["--fault-reference", "ref-7=429"])
    without = parser.parse_args([])
    assert config_from_args(without).faults.by_reference == ()


async def test_a_receiver_with_a_journal_answers_400_to_what_is_not_a_callback(tmp_path: Path) -> None:
    async with SqliteJournal(tmp_path / "j") as journal, run_callback_receiver(journal=journal) as receiver:
        async with httpx.AsyncClient() as http:
            bad = await http.post(receiver.url, data={"merchantIdScanReference": "x"})  # no scan reference
            stray = await http.post(
                receiver.url,
                data={
                    "jumioIdScanReference": "0f3c6a0e-5b0a-4a52-9d39-9a1c7b1f2d11",
                    "verificationStatus": "X",
                },
            )
        assert (bad.status_code, stray.status_code) == (400, 200)
        assert [(r.answered, r.effect) for r in receiver.received] == [(400, None), (200, "not_in_journal")]
        assert receiver.accepted == receiver.received[1:]
        assert sum((await journal.counts()).values()) == 0

        # a journal that cannot record: 503, so that the sender delivers it again later
        await journal.aclose()
        async with httpx.AsyncClient() as http:
            refused = await http.post(
                receiver.url, data={"jumioIdScanReference": "0f3c6a0e-5b0a-4a52-9d39-9a1c7b1f2d12"}
            )
        assert refused.status_code == 503 and receiver.received[-1].answered == 503
        assert len(receiver.accepted) == 1
