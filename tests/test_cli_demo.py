"""``netverify-async demo`` end to end (a real subprocess), and the synthetic documents it draws."""

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
    assert re.search(rf"sent / receipts\s*\|\s*{int(total_received)} / {int(total_received)}\s*\|", out)
    assert re.search(r"429 answers \(rate limited\)\s*\|\s*[1-9]", out)  # the injected faults were retried
    assert "demo OK" in out
    # references and statuses only: the fake customer ids carrying the outcome keywords are never shown
    assert "demo-customer" not in out


def test_the_json_summary_matches_what_was_asked() -> None:
    result = demo("--size", "6", "--bad", "2", "--rate", "50/s", "--seed", "5", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    summary: dict[str, Any] = json.loads(lines[0])
    assert summary["ok"] is True and summary["problems"] == []
    assert summary["documents"] == 6 and summary["defective"] == 2
    assert summary["receipts"] == summary["sent"] == 4
    assert len(summary["preflightRejected"]) == 2
    assert all(r["codes"] and r["image"] == "front" for r in summary["preflightRejected"])
    assert summary["callbacks"] == {"expected": 4, "received": 4, "unparseable": 0}
    assert sum(o["received"] for o in summary["outcomes"].values()) == 4
    assert all(o["requested"] == o["received"] for o in summary["outcomes"].values())
    assert set(summary["outcomes"]) <= VERIFICATION_STATUSES
    assert summary["duplicateScans"] == 0 and summary["outcomeUnknown"] == 0
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
