"""``netverify-async preflight --json`` as a real subprocess: one JSON object per file and line, exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from netverify_async.emulator._synthetic import render_document

DOCUMENTED_KEYS = {"path", "ok", "format", "width", "height", "bytes", "errors", "warnings"}


def preflight(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netverify_async", "preflight", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_json_lines_for_good_and_bad_files_and_the_exit_status(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(render_document(0, seed=1).front.data)
    bad = {
        defect: render_document(1, seed=1, defect=defect).front
        for defect in ("too_small", "not_an_image", "truncated")
    }
    paths = [good]
    for defect, image in bad.items():
        path = tmp_path / f"{defect}.jpg"
        path.write_bytes(image.data)
        paths.append(path)

    only_good = preflight("--json", str(good))
    assert only_good.returncode == 0, only_good.stderr
    [line] = only_good.stdout.splitlines()
    assert json.loads(line)["ok"] is True

    mixed = preflight("--json", *(str(p) for p in paths))
    assert mixed.returncode == 1
    objects = [json.loads(line) for line in mixed.stdout.splitlines()]
    assert [o["path"] for o in objects] == [str(p) for p in paths]
    assert all(set(o) == DOCUMENTED_KEYS for o in objects)
    assert objects[0]["ok"] is True and objects[0]["format"] == "JPEG" and objects[0]["errors"] == []
    codes = {Path(o["path"]).stem: [e["code"] for e in o["errors"]] for o in objects[1:]}
    assert codes == {
        "too_small": ["too_small"],
        "not_an_image": ["unsupported_format"],
        "truncated": ["corrupt_image"],
    }
    assert all(
        o["ok"] is False and all(set(e) == {"code", "message"} for e in o["errors"]) for o in objects[1:]
    )
