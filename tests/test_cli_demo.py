"""``netverify-async demo`` end to end (a real subprocess, and in-process through ``main()``), and the synthetic
documents it draws."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from netverify_async import check_image_sync
from netverify_async.emulator._synthetic import (
    DEFECTS,
    generate_documents_sync,
    pick_defects,
    render_document,
)

VERIFICATION_STATUSES = {
    "APPROVED_VERIFIED",
    "DENIED_FRAUD",
    "DENIED_UNSUPPORTED_ID_TYPE",
    "DENIED_UNSUPPORTED_ID_COUNTRY",
    "ERROR_NOT_READABLE_ID",
    "NO_ID_UPLOADED",
}


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def results_table(out: str) -> dict[str, dict[str, str]]:
    """The rows of the "Verification results, per document" table, by reference."""
    section = out.split("Verification results, per document", 1)[1].split("Verification outcomes", 1)[0]
    found = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"demo-\d+-\d{4}", cells[0]):
            ref, scan, status, reason, via = cells
            found[ref] = {"scan": scan, "status": status, "reason": reason, "via": via}
    return found


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "netverify_async", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )


def test_a_small_demo_exits_0_with_a_summary_whose_counts_add_up() -> None:
    size = 8
    result = demo("--size", str(size), "--rate", "50/s", "--seed", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    # not a terminal: no live bar, plain ASCII tables without colour codes
    assert "\x1b[" not in out and "━" not in out

    assert "Verification outcomes (from callbacks)" in out
    rows = re.findall(r"^\|\s*([A-Z_]+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|$", out, re.MULTILINE)
    assert rows, out
    assert {status for status, _, _ in rows} <= VERIFICATION_STATUSES
    assert len({status for status, _, _ in rows}) >= 2  # a mix of outcomes was asked for
    assert all(requested == received for _, requested, received in rows)
    (total_requested, total_received) = re.findall(
        r"^\|\s*total\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|$", out, re.MULTILINE
    )[0]
    assert int(total_requested) == int(total_received) == sum(int(r) for _, r, _ in rows)

    rejected = re.findall(r"^\|\s*(demo-3-\d{4})\s*\|\s*front\s*\|\s*([a-z_]+):", out, re.MULTILINE)
    assert {code for _, code in rejected} <= set(DEFECTS.values())
    assert len(rejected) + int(total_received) == size
    # one answer was lost on purpose: sent, but no receipt; its callback settled it
    sent = int(total_received)
    assert re.search(rf"sent / receipts\s*\|\s*{sent} / {sent - 1}\s*\|", out)
    assert re.search(r"429 answers \(rate limited\)\s*\|\s*[1-9]", out)  # the injected faults were retried
    assert "demo OK" in out
    # references and statuses only: the fake customer ids carrying the outcome keywords are never shown
    assert "demo-customer" not in out

    # the per-document results: every document, with its scan and verification status, or its refusal
    table = results_table(out)
    assert sorted(table) == [f"demo-3-{i:04d}" for i in range(size)]
    refused = {ref for ref, row in table.items() if row["via"] == "preflight"}
    assert refused == {ref for ref, _ in rejected}
    assert all(
        table[ref]["status"] == "refused by preflight" and table[ref]["scan"] == "-" for ref in refused
    )
    assert all(table[ref]["reason"] in DEFECTS.values() for ref in refused)
    scanned = {ref: row for ref, row in table.items() if ref not in refused}
    assert all(UUID.fullmatch(row["scan"]) for row in scanned.values())
    assert all(row["status"] in VERIFICATION_STATUSES for row in scanned.values())
    assert len({row["scan"] for row in scanned.values()}) == len(scanned)  # no scan twice
    counted = {status: int(received) for status, _, received in rows}
    assert {s: sum(r["status"] == s for r in scanned.values()) for s in counted} == counted
    for row in scanned.values():  # a reject reason only for the denials that carry one
        assert (row["reason"] != "-") == (row["status"] in ("DENIED_FRAUD", "ERROR_NOT_READABLE_ID"))

    # exactly one unknown outcome, settled by its callback; said during the run and in the summary
    [(ref, scan)] = re.findall(
        r"^  (demo-3-\d{4}): unknown -> received by callback \(scan ([0-9a-f-]{36})\)$", out, re.MULTILINE
    )
    assert table[ref]["via"] == "unknown->callback" and table[ref]["scan"] == scan
    assert {r for r, row in table.items() if row["via"] == "unknown->callback"} == {ref}
    assert all(row["via"] == "callback" for r, row in scanned.items() if r != ref)
    reconciled = re.findall(
        r"^reconciled: (\S+) unknown -> received by callback, scan (\S+) \((\w+)\)$", out, re.M
    )
    assert reconciled == [(ref, scan, table[ref]["status"])]
    assert re.search(r"outcome unknown\s*\|\s*1 \(1 settled by callback\)\s*\|", out)
    assert re.search(rf"verification results\s*\|\s*{sent} of {sent}\s*\|", out)
    assert f"the unknown outcome of {ref} was settled by its callback" in out

    # the same seed aims the lost answer at the same document
    again = demo("--size", str(size), "--rate", "50/s", "--seed", "3", "--json")
    assert json.loads(again.stdout)["ambiguousFault"] == ref


def test_the_json_summary_matches_what_was_asked() -> None:
    result = demo("--size", "6", "--bad", "2", "--rate", "50/s", "--seed", "5", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    summary: dict[str, Any] = json.loads(lines[0])
    assert summary["ok"] is True and summary["problems"] == []
    assert summary["documents"] == 6 and summary["defective"] == 2
    assert summary["sent"] == 4 and summary["receipts"] == 3  # one answer lost on purpose
    assert len(summary["preflightRejected"]) == 2
    assert all(r["codes"] and r["image"] == "front" for r in summary["preflightRejected"])
    assert summary["callbacks"] == {"expected": 4, "received": 4, "unparseable": 0}
    assert sum(o["received"] for o in summary["outcomes"].values()) == 4
    assert all(o["requested"] == o["received"] for o in summary["outcomes"].values())
    assert set(summary["outcomes"]) <= VERIFICATION_STATUSES
    assert summary["duplicateScans"] == 0 and summary["outcomeUnknown"] == 1
    lost = summary["ambiguousFault"]
    assert summary["faultsInjected"]["drop"] == 1
    [reconciled] = summary["reconciled"]
    assert reconciled["reference"] == lost and (reconciled["from"], reconciled["to"]) == (
        "unknown",
        "receipt",
    )
    results = {row["reference"]: row for row in summary["results"]}
    assert len(results) == 6
    assert results[lost]["via"] == "unknown->callback" and results[lost]["outcome"] == "unknown"
    assert results[lost]["scanReference"] == reconciled["scanReference"]
    good = [row for row in results.values() if row["via"] != "preflight"]
    assert len(good) == 4 and all(row["status"] in VERIFICATION_STATUSES for row in good)
    assert {row["reference"] for row in summary["results"] if row["via"] == "preflight"} == {
        r["reference"] for r in summary["preflightRejected"]
    }
    assert summary["resultsFromCallbacks"] == 4 and summary["resultsPolled"] == 0
    assert summary["retries"] >= summary["faultsInjected"].get("429", 0) + summary["faultsInjected"].get(
        "503", 0
    )


@pytest.mark.parametrize("flags", [["--size", "0"], ["--rate", "fast"], ["--concurrency", "x"]])
def test_bad_demo_options_are_usage_errors(flags: list[str]) -> None:
    result = demo(*flags)
    assert result.returncode == 2
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


# ----------------------------------------------------------------------------------------------------------
# Synthetic documents (real Pillow decodes of the generated files)
# ----------------------------------------------------------------------------------------------------------


def test_good_synthetic_documents_pass_preflight_and_vary_in_size() -> None:
    docs = generate_documents_sync(6, seed=21)
    sizes = set()
    for doc in docs:
        assert doc.defect is None and doc.expected_error is None
        for role, image in doc.images.items():
            report = check_image_sync(image.data, image.declared_mime, role=role)  # type: ignore[arg-type]
            assert report.ok, (doc.index, role, report.errors)
            assert report.format == "JPEG" and (report.width, report.height) == (image.width, image.height)
        sizes.add((doc.front.width, doc.front.height))
    assert len(sizes) > 1


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_provokes_its_preflight_error(defect: Any) -> None:
    doc = render_document(3, seed=1, defect=defect)
    report = check_image_sync(doc.front.data, doc.front.declared_mime)
    assert not report.ok
    assert DEFECTS[defect] in report.error_codes
    assert doc.back is None and doc.face is None


def test_documents_are_reproducible_from_their_seed() -> None:
    assert render_document(4, seed=9).front.data == render_document(4, seed=9).front.data
    assert render_document(4, seed=9).front.data != render_document(4, seed=10).front.data
    defects = pick_defects(20, 4, seed=2)
    assert len(defects) == 4 and set(defects.values()) == set(DEFECTS)
    assert defects == pick_defects(20, 4, seed=2)


@pytest.mark.anyio
async def test_drawing_in_worker_threads_gives_the_same_documents_in_order() -> None:
    from netverify_async.emulator._synthetic import generate_documents

    seen: list[int] = []
    docs = await generate_documents(5, seed=4, bad=2, on_document=lambda d: seen.append(d.index))
    assert [d.index for d in docs] == [0, 1, 2, 3, 4] and sorted(seen) == [0, 1, 2, 3, 4]
    same = generate_documents_sync(5, seed=4, bad=2)
    assert [d.front.data for d in docs] == [d.front.data for d in same]
    assert sum(d.defect is not None for d in docs) == 2


def test_a_large_demo_shows_the_unusual_rows_first_and_counts_the_rest() -> None:
    result = demo("--size", "44", "--bad", "4", "--rate", "200/s", "--seed", "11")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    table = results_table(out)
    assert len(table) == 40
    assert "40 of 44 documents shown (the unusual ones first)" in " ".join(out.split())
    assert sum(row["via"] == "preflight" for row in table.values()) == 4  # every refusal is shown
    assert sum(row["via"] == "unknown->callback" for row in table.values()) == 1  # and the settled one
    left_out = 44 - 40
    approved = sum(row["status"] == "APPROVED_VERIFIED" for row in table.values())
    (requested_approved,) = re.findall(r"^\|\s*APPROVED_VERIFIED\s*\|\s*(\d+)\s*\|", out, re.MULTILINE)
    assert approved == int(requested_approved) - left_out  # only approved rows were left out
    assert list(table) == sorted(table)


def test_without_callbacks_the_results_are_polled_and_the_unknown_outcome_fails_the_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A receiver that refuses every delivery: the results come from the retrieval API instead, but nothing
    can settle the lost answer, so the demo says so and exits 1."""
    import functools

    import netverify_async.emulator as emulator_package
    from netverify_async.cli import demo as demo_command
    from netverify_async.cli import main

    refusing = functools.partial(emulator_package.run_callback_receiver, fail_first=10**6)
    monkeypatch.setattr(emulator_package, "run_callback_receiver", refusing)
    monkeypatch.setattr(demo_command, "CALLBACK_GRACE_S", 0.0)
    for name in [n for n in os.environ if n.startswith("NETVERIFY_")]:
        monkeypatch.delenv(name)
    status = main(
        ["demo", "--size", "5", "--bad", "1", "--rate", "100/s", "--seed", "2", "--callback-timeout", "2"]
    )
    out = capsys.readouterr().out
    assert status == 1, out
    table = results_table(out)
    assert len(table) == 5
    lost = [ref for ref, row in table.items() if row["status"] == "no result"]
    assert len(lost) == 1 and table[lost[0]]["scan"] == "-" and table[lost[0]]["reason"] == "outcome unknown"
    polled = [ref for ref, row in table.items() if row["via"] == "polled"]
    assert len(polled) == 3 and all(table[ref]["status"] in VERIFICATION_STATUSES for ref in polled)
    assert "callback(s) not here yet: polling the retrieval API" in out
    assert "problem: 1 unknown outcome(s) were not settled by a callback" in out
    assert "problem: 4 callback(s) did not arrive" not in out  # only the three scans known could get one
    assert "problem: 3 callback(s) did not arrive" in out
    assert "problem: 1 good document(s) have no verification result" in out
    assert "reconciled:" not in out and "demo OK" not in out
