"""The README's quickstart, run as a reader runs it: saved as ``quickstart.py`` and started as its own process
against the emulator (``netverify-async emulator``'s default processing delay), with the sample image the README
says how to make. It must print the result within seconds, not after Jumio's first polling delay of 40 s."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Below Jumio's first polling delay (40 s): a quickstart that polled on the production schedule could not finish
#: before this bound, while the loopback schedule finishes in about two seconds (a bound, not a measurement).
BEFORE_THE_FIRST_PRODUCTION_POLL_S = 35


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_the_readme_quickstart_finishes_in_seconds_against_the_emulator(tmp_path: Path) -> None:
    from netverify_async.emulator import run_emulator_in_thread

    blocks = _python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    [sample] = [b for b in blocks if "sample_image(" in b and "write_bytes" in b]
    [quickstart] = [b for b in blocks if "wait_for_result" in b and "anyio.run(main)" in b]
    (tmp_path / "make_sample.py").write_text(sample, encoding="utf-8")
    (tmp_path / "quickstart.py").write_text(quickstart, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}

    made = subprocess.run(
        [sys.executable, "make_sample.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "passport.jpg").stat().st_size > 0

    with run_emulator_in_thread() as emulator:  # the emulator command's defaults (processing delay 0.5 s)
        env.update(
            NETVERIFY_BASE_URL=emulator.base_url,
            NETVERIFY_API_TOKEN=emulator.api_token,
            NETVERIFY_API_SECRET=emulator.api_secret,
            NETVERIFY_USER_AGENT="Example Corp SampleApp/1.0",
        )
        result = subprocess.run(
            [sys.executable, "quickstart.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=BEFORE_THE_FIRST_PRODUCTION_POLL_S,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("scan "), result.stdout
    assert lines[-1].startswith("approved"), result.stdout
