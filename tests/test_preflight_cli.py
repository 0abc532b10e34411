"""``netverify-async preflight``: JSON lines, the table, exit status, ``--fix`` output files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _preflight_support import encode, jpeg, open_image, picture, png

from netverify_async.cli import main

JSON_KEYS = {"path", "ok", "format", "width", "height", "bytes", "errors", "warnings"}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {
        "good": ("good.jpg", jpeg()),
        "webp": ("scan.webp", encode(picture(1200, 800), "WEBP")),
        "small": ("tiny.png", png(200, 150)),
        "truncated": ("cut.png", png()[:-300]),
    }
    paths = {}
    for key, (name, data) in made.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths[key] = path
    paths["missing"] = tmp_path / "nowhere.jpg"
    return paths


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_in_the_given_order_and_exit_1_when_any_file_fails(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    order = ["good", "webp", "small", "truncated", "missing"]
    status = main(["preflight", "--json", *(str(files[k]) for k in order)])
    lines = json_lines(capsys.readouterr().out)
    assert status == 1
    assert [line["path"] for line in lines] == [str(files[k]) for k in order]
    assert all(set(line) == JSON_KEYS for line in lines)
    by_key = dict(zip(order, lines, strict=True))
    assert by_key["good"]["ok"] is True and by_key["good"]["format"] == "JPEG"
    assert (by_key["good"]["width"], by_key["good"]["height"]) == (1200, 800)

    def codes(key: str) -> list[object]:
        return [e["code"] for e in by_key[key]["errors"]]  # type: ignore[attr-defined]

    assert codes("webp") == ["unsupported_format"]
    assert codes("small") == ["too_small"]
    assert codes("truncated") == ["corrupt_image"]
    assert codes("missing") == ["unreadable"]
    assert by_key["missing"]["format"] is None


def test_exit_0_when_every_file_passes(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preflight", "--json", str(files["good"])]) == 0
    assert json_lines(capsys.readouterr().out)[0]["ok"] is True


def test_header_integrity_skips_the_decode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(png())
    idat = data.index(b"IDAT")
    for i in range(idat + 200, idat + 400):
        data[i] ^= 0x5A
    path = tmp_path / "damaged.png"
    path.write_bytes(bytes(data))
    assert main(["preflight", "--json", "--integrity", "header", str(path)]) == 0
    assert main(["preflight", "--json", str(path)]) == 1
    lines = json_lines(capsys.readouterr().out)
    assert lines[1]["errors"][0]["code"] == "corrupt_image"  # type: ignore[index]


def test_fix_writes_acceptable_copies(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outdir = tmp_path / "fixed"
    status = main(["preflight", "--json", "--fix", str(outdir), str(files["good"]), str(files["webp"])])
    lines = json_lines(capsys.readouterr().out)
    assert status == 0
    assert all(set(line) == JSON_KEYS | {"changes", "output"} for line in lines)
    good, webp = lines
    assert good["changes"] == [] and good["output"] == str(outdir / "good.jpg")
    assert (outdir / "good.jpg").read_bytes() == files["good"].read_bytes()
    assert webp["changes"] == ["converted WEBP to JPEG"] and webp["output"] == str(outdir / "scan.jpg")
    assert open_image((outdir / "scan.jpg").read_bytes()).format == "JPEG"


def test_fix_never_overwrites_inputs_or_its_own_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "id.png").write_bytes(png())
    inputs = [str(tmp_path / "a" / "id.png"), str(tmp_path / "b" / "id.png")]
    assert main(["preflight", "--json", "--fix", str(tmp_path / "a"), *inputs]) == 0
    outputs = [line["output"] for line in json_lines(capsys.readouterr().out)]
    assert outputs == [str(tmp_path / "a" / "id-1.png"), str(tmp_path / "a" / "id-2.png")]
    assert (tmp_path / "a" / "id.png").read_bytes() == png()


def test_failing_files_get_no_output_with_fix(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outdir = tmp_path / "out"
    assert main(["preflight", "--json", "--fix", str(outdir), str(files["small"])]) == 1
    assert json_lines(capsys.readouterr().out)[0]["output"] is None
    assert list(outdir.iterdir()) == []


def test_table_names_files_and_problems(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(files["good"].parent)  # short names, so the table does not fold them
    status = main(["preflight", "--role", "back", "good.jpg", "tiny.png", "nowhere.jpg"])
    out = capsys.readouterr().out
    assert status == 1
    for text in ("good.jpg", "tiny.png", "nowhere.jpg", "too_small", "unreadable", "1 of 3"):
        assert text in out


def test_command_runs_as_a_program(files: dict[str, Path]) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "netverify_async",
            "preflight",
            "--json",
            str(files["good"]),
            str(files["small"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    lines = json_lines(done.stdout)
    assert [line["ok"] for line in lines] == [True, False]
    assert "Traceback" not in done.stderr


def test_the_table_in_a_pipe_is_ascii_and_names_the_flag(files: dict[str, Path]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "netverify_async", "preflight", str(files["webp"]), str(files["good"])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.stdout.isascii(), result.stdout  # no box-drawing characters into a pipe
    assert "--fix" in result.stdout and "fix=True" not in result.stdout
