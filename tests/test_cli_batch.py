"""``netverify-async batch``: manifests, resuming with the journal, bad input; the manifest reader under fuzzing.

The command runs as a real subprocess against the emulator served over loopback HTTP in this process.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netverify_async import NetverifyError, NetverifyRequest, RequestValidationError
from netverify_async.cli._manifest import (
    COLUMNS,
    InvalidRow,
    ManifestError,
    ManifestReader,
    ManifestRow,
    build_request,
    read_rows,
)
from netverify_async.emulator._synthetic import generate_documents_sync

GOOD_ROWS = 4


@pytest.fixture
def emulator() -> Iterator[Any]:
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0) as emu:
        yield emu


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real synthetic document images (one of them too small for Jumio)."""
    folder = tmp_path_factory.mktemp("images")
    for doc in generate_documents_sync(GOOD_ROWS + 1, seed=11, bad=0):
        for image in doc.images.values():
            (folder / image.name).write_bytes(image.data)
    small = generate_documents_sync(1, seed=12, bad=1)[0].front
    (folder / "small.jpg").write_bytes(small.data)
    return folder


def csv_manifest(folder: Path, image_dir: Path, rows: list[str] | None = None, name: str = "m.csv") -> Path:
    """A manifest whose image paths are relative to its own folder (images in a sub-folder)."""
    link = folder / "img"
    if not link.exists():
        link.symlink_to(image_dir, target_is_directory=True)
    if rows is None:
        rows = [f"ref-{i},img/doc-{i:04d}-front.jpg,,,AUT,PASSPORT,cust-{i}" for i in range(GOOD_ROWS)]
    path = folder / name
    path.write_text("reference,front,back,face,country,id_type,customer_id\n" + "\n".join(rows) + "\n")
    return path


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "netverify_async", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def json_lines(text: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    objects = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert objects and objects[-1]["type"] == "summary"
    assert all(o["type"] == "item" for o in objects[:-1])
    return objects[:-1], objects[-1]


def scans_per_reference(emu: Any) -> dict[str, int]:
    return {ref: len(scans) for ref, scans in emu.stats.scans_by_merchant_reference.items()}


# ----------------------------------------------------------------------------------------------------------
# Running the command
# ----------------------------------------------------------------------------------------------------------


def test_a_rerun_with_the_same_journal_sends_nothing_again(
    emulator: Any, image_dir: Path, tmp_path: Path
) -> None:
    manifest = csv_manifest(tmp_path, image_dir)
    first = cli("batch", str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none", "--json")
    assert first.returncode == 0, first.stderr
    items, summary = json_lines(first.stdout)
    assert sorted(i["reference"] for i in items) == [f"ref-{i}" for i in range(GOOD_ROWS)]
    assert {i["status"] for i in items} == {"receipt"}
    assert all(i["scanReference"] for i in items)
    assert sorted(i["row"] for i in items) == list(range(2, GOOD_ROWS + 2))  # the header is row 1
    assert summary["counts"]["receipt"] == GOOD_ROWS and summary["exitStatus"] == 0
    assert Path(str(manifest) + ".journal.sqlite3").is_file()
    requests_after_first = emulator.stats.requests

    second = cli("batch", str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none", "--json")
    assert second.returncode == 0, second.stderr
    items2, summary2 = json_lines(second.stdout)
    assert {i["status"] for i in items2} == {"skipped_already_done"}
    assert {i["reference"]: i["scanReference"] for i in items2} == {
        i["reference"]: i["scanReference"] for i in items
    }
    assert summary2["sent"] == 0
    assert emulator.stats.requests == requests_after_first
    assert scans_per_reference(emulator) == {f"ref-{i}": 1 for i in range(GOOD_ROWS)}


def test_the_text_summary_reports_already_done_rows(emulator: Any, image_dir: Path, tmp_path: Path) -> None:
    manifest = csv_manifest(tmp_path, image_dir)
    assert (
        cli("batch", str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none").returncode == 0
    )
    again = cli("batch", str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none")
    assert again.returncode == 0, again.stderr
    counts = dict(re.findall(r"^\|\s*([a-z][a-z ()]+?)\s*\|\s*(\d+)\s*\|$", again.stdout, re.MULTILINE))
    assert counts == {"already done (journal)": str(GOOD_ROWS), "total": str(GOOD_ROWS)}
    assert "sent 0 in" in again.stdout


def test_unknown_outcomes_are_skipped_until_resend_unknown_is_given(
    emulator: Any, image_dir: Path, tmp_path: Path
) -> None:
    # the first submission is answered 500 before any scan is created: the client cannot know that
    emulator.set_faults(sequence=("500",), error_phase="before")
    manifest = csv_manifest(
        tmp_path, image_dir, [f"ref-{i},img/doc-{i:04d}-front.jpg,,,AUT,PASSPORT," for i in range(2)]
    )
    args = ("batch", str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none", "--json")
    first = cli(*args, "--concurrency", "1")
    assert first.returncode == 1
    items, summary = json_lines(first.stdout)
    assert sorted(i["status"] for i in items) == ["receipt", "unknown"]
    assert summary["unknownInJournal"] == 1

    second = cli(*args)
    assert second.returncode == 1
    items2, _ = json_lines(second.stdout)
    assert sorted(i["status"] for i in items2) == ["skipped_already_done", "skipped_unknown"]

    third = cli(*args, "--resend-unknown")
    assert third.returncode == 0, third.stdout
    items3, summary3 = json_lines(third.stdout)
    assert sorted(i["status"] for i in items3) == ["receipt", "skipped_already_done"]
    assert summary3["unknownInJournal"] == 0
    assert scans_per_reference(emulator) == {"ref-0": 1, "ref-1": 1}


def test_malformed_rows_become_invalid_outcomes_naming_row_and_field(
    emulator: Any, image_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "img").symlink_to(image_dir, target_is_directory=True)
    lines = [
        json.dumps({"reference": "ok-1", "front": "img/doc-0000-front.jpg", "country": "AUT", "idType": "PASSPORT"}),
        "",  # blank lines are skipped but still counted as lines
        "{not json",
        json.dumps({"reference": "bad-country", "front": "img/doc-0001-front.jpg", "country": "ZZZ", "id_type": "PASSPORT"}),
        json.dumps({"reference": "no-file", "front": "img/nowhere.jpg", "country": "AUT", "id_type": "PASSPORT"}),
        json.dumps({"reference": "odd-key", "front": "img/doc-0002-front.jpg", "country": "AUT", "id_type": "PASSPORT", "colour": "red"}),
        json.dumps(["a", "list"]),
        json.dumps({"reference": "small", "front": "img/small.jpg", "country": "AUT", "id_type": "PASSPORT"}),
        json.dumps({"reference": "ok-1", "front": "img/doc-0003-front.jpg", "country": "AUT", "id_type": "PASSPORT"}),
    ]  # fmt: skip
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    result = cli("batch", str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none", "--json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    items, summary = json_lines(result.stdout)
    by_row = {i["row"]: i for i in items}
    assert sorted(by_row) == [1, 3, 4, 5, 6, 7, 8, 9]
    assert by_row[1]["status"] == "receipt"
    assert by_row[3]["status"] == "invalid" and "row 3" in by_row[3]["error"]
    assert [(i["field"], i["code"]) for i in by_row[4]["issues"]] == [("country", "invalid_country")]
    assert [(i["field"], i["code"]) for i in by_row[5]["issues"]] == [("front", "file_not_found")]
    assert by_row[6]["issues"][0]["code"] == "unknown_column" and "colour" in by_row[6]["issues"][0]["field"]
    assert by_row[7]["status"] == "invalid"
    assert by_row[8]["status"] == "preflight_rejected"
    assert [(i["field"], i["code"]) for i in by_row[8]["issues"]] == [("front", "too_small")]
    assert by_row[9]["status"] == "invalid"  # a reference repeated within the manifest
    assert by_row[9]["issues"][0]["code"] == "duplicate_reference"
    assert summary["counts"] == {
        "receipt": 1,
        "skipped_already_done": 0,
        "failed": 0,
        "unknown": 0,
        "skipped_unknown": 0,
        "preflight_rejected": 1,
        "invalid": 6,
    }
    assert scans_per_reference(emulator) == {"ok-1": 1}


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        (None, "missing.csv", "no such file"),
        ("name,file\nx,y\n", "m.csv", "lacks the required column(s): reference, front, country, id_type"),
        (
            "reference,front,country,id_type,shoe_size\n",
            "m.csv",
            "unknown column(s) in the header: 'shoe_size'",
        ),
        ("", "m.csv", "empty"),
        ("reference,front,country,id_type\n", "m.txt", "use .csv, .jsonl or .ndjson"),
        ("reference,front,country,id_type\n", "m.jsonl", "is not valid JSON; is this a JSON Lines file?"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "m.csv", "binary data"),
    ],
)
def test_a_manifest_that_cannot_be_read_is_one_error_line_and_exit_1(
    tmp_path: Path, content: str | bytes | None, name: str, expected: str
) -> None:
    manifest = tmp_path / name
    if isinstance(content, bytes):
        manifest.write_bytes(content)
    elif content is not None:
        manifest.write_text(content)
    result = cli("batch", str(manifest), "--emulator", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and expected in result.stderr
    assert not Path(str(manifest) + ".journal.sqlite3").exists()  # nothing started


def test_a_csv_without_header_row_is_refused_without_echoing_its_data(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("ref-1,img/front.jpg,Alexandra,AUT,PASSPORT\n")
    result = cli("batch", str(manifest), "--emulator", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert "is the first row a header?" in result.stderr
    assert "Alexandra" not in result.stderr and "ref-1" not in result.stderr


def test_no_resume_refuses_a_journal_that_records_items(
    emulator: Any, image_dir: Path, tmp_path: Path
) -> None:
    manifest = csv_manifest(tmp_path, image_dir, ["r-1,img/doc-0000-front.jpg,,,AUT,PASSPORT,"])
    args = ("batch", str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none")
    assert cli(*args, "--no-resume").returncode == 0  # a fresh journal is fine
    refused = cli(*args, "--no-resume")
    assert refused.returncode == 2
    assert "already records 1 item" in refused.stderr
    assert scans_per_reference(emulator) == {"r-1": 1}


@pytest.mark.parametrize("flags", [["--concurrency", "0"], ["--resume", "--bogus"], []])
def test_usage_errors_exit_2(flags: list[str], tmp_path: Path) -> None:
    args = ["batch", *flags] if flags else ["batch"]
    result = cli(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr


# ----------------------------------------------------------------------------------------------------------
# The manifest reader against hostile input
# ----------------------------------------------------------------------------------------------------------

_CELL = st.text(alphabet=st.sampled_from(list("ab1-_ ./,;\"'\t\r\n{}[]:#\\é\x00\x1b")), max_size=12)
_HEADER_NAMES = st.sampled_from([*COLUMNS, "merchantIdScanReference", "idType", "Front-Image", "", "bogus"])


def _consume(rows: Any, base_dir: Path) -> list[Any]:
    """Read every row and turn each readable one into a request; only typed outcomes are allowed."""
    results: list[Any] = []
    for entry in rows:
        assert isinstance(entry, (ManifestRow, InvalidRow))
        if isinstance(entry, InvalidRow):
            assert entry.issues and entry.message.startswith(f"row {entry.row}: ")
            assert isinstance(entry.error(), RequestValidationError)
            results.append(entry)
            continue
        built = build_request(entry, base_dir)
        assert isinstance(built, (NetverifyRequest, InvalidRow))
        results.append(built)
    return results


def _read_text(text: str, fmt: Any, base_dir: Path) -> None:
    try:
        rows = read_rows(io.StringIO(text, newline=""), fmt)
        _consume(rows, base_dir)
    except ManifestError as exc:
        assert isinstance(exc, NetverifyError)
        assert str(exc) and "\n" not in str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.lists(_HEADER_NAMES, min_size=1, max_size=8)
    | st.lists(st.sampled_from(COLUMNS), unique=True, max_size=6).flatmap(
        lambda extra: st.permutations(sorted(set(extra) | {"reference", "front", "country", "id_type"}))
    ),
    rows=st.lists(st.lists(_CELL, max_size=9), max_size=6),
    delimiter=st.sampled_from([",", ";", "\t"]),
)
def test_random_csv_gives_only_typed_errors_or_invalid_rows(
    header: list[str], rows: list[list[str]], delimiter: str, tmp_path: Path
) -> None:
    text = delimiter.join(header) + "\n" + "\n".join(delimiter.join(r) for r in rows)
    _read_text(text, "csv", tmp_path)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _CELL,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_CELL, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    objects=st.lists(
        st.dictionaries(_HEADER_NAMES | _CELL, _JSON_VALUES, max_size=6) | _JSON_VALUES, max_size=6
    ),
    garbage=st.lists(_CELL, max_size=3),
)
def test_random_json_lines_give_only_typed_errors_or_invalid_rows(
    objects: list[Any], garbage: list[str], tmp_path: Path
) -> None:
    lines = [json.dumps(o) for o in objects] + garbage
    _read_text("\n".join(lines), "jsonl", tmp_path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_random_bytes_in_a_manifest_file_give_only_typed_errors(
    data: bytes, suffix: str, tmp_path: Path
) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(b"reference,front,country,id_type\n" + data if suffix == ".csv" else data)
    try:
        with ManifestReader(path) as reader:
            _consume(iter(reader), reader.base_dir)
    except ManifestError:
        pass


def test_a_row_can_name_an_absolute_path_and_every_problem_at_once(tmp_path: Path, image_dir: Path) -> None:
    text = (
        "merchantIdScanReference;Front;Country;ID-Type;consent_at;enabled_fields\n"
        f"abs-1;{image_dir / 'doc-0000-front.jpg'};AUT;passport;;idNumber|idFirstName\n"
        "bad-2;nowhere.jpg;ZZ;PASSPORT;yesterday;\n"
    )
    rows = _consume(read_rows(io.StringIO(text, newline=""), "csv"), tmp_path)
    assert isinstance(rows[0], NetverifyRequest)
    assert rows[0].enabled_fields is not None and len(rows[0].enabled_fields) == 2
    assert isinstance(rows[1], InvalidRow) and rows[1].row == 3
    assert {(i.path, i.code) for i in rows[1].issues} >= {
        ("front", "file_not_found"),
        ("consent_at", "invalid_timestamp"),
    }
    assert any(i.path == "country" for i in rows[1].issues)


def test_a_very_long_line_stops_a_csv_manifest_but_only_skips_a_json_lines_row(tmp_path: Path) -> None:
    from netverify_async.cli._manifest import MAX_LINE_CHARS

    long_value = "x" * (MAX_LINE_CHARS + 10)
    with pytest.raises(ManifestError, match="longer than"):
        list(read_rows(io.StringIO(f"reference,front,country,id_type\n{long_value}\n"), "csv"))
    first = json.dumps({"reference": "a", "front": "a.jpg", "country": "AUT", "id_type": "PASSPORT"})
    rows = list(read_rows(io.StringIO(f"{first}\n{long_value}\n{first}\n"), "jsonl"))
    assert [type(r).__name__ for r in rows] == ["ManifestRow", "InvalidRow", "ManifestRow"]
    assert isinstance(rows[1], InvalidRow) and rows[1].row == 2 and rows[1].issues[0].code == "too_long"
