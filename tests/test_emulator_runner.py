"""Ways to run the emulator: in the asyncio loop, from trio (thread), from sync code, from the command line."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from netverify_async import ConfigurationError
from netverify_async.emulator import (
    API_HEADERS,
    EmulatorConfig,
    EmulatorThread,
    run_callback_receiver,
    run_emulator,
    run_emulator_in_thread,
    submission_body,
)

PERFORM = "/api/netverify/v2/performNetverify"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_run_emulator_works_on_asyncio_and_trio(anyio_backend: str) -> None:
    async with (
        run_emulator(processing_delay=0, errors={503: 1.0}) as emu,
        httpx.AsyncClient(base_url=emu.base_url, auth=emu.auth, headers=API_HEADERS) as client,
    ):
        assert emu.base_url.startswith("http://127.0.0.1:")
        assert (await client.post(PERFORM, json=submission_body())).status_code == 503
        emu.set_faults()
        assert (await client.post(PERFORM, json=submission_body())).status_code == 200
        assert emu.stats.scans_created == 1


@pytest.mark.anyio
async def test_callbacks_reach_a_receiver_on_asyncio_and_trio(anyio_backend: str) -> None:
    async with (
        run_callback_receiver() as receiver,
        run_emulator(processing_delay=0, allow_http_callbacks=True) as emu,
        httpx.AsyncClient(base_url=emu.base_url, auth=emu.auth, headers=API_HEADERS) as client,
    ):
        await client.post(PERFORM, json=submission_body("x#fraud", callbackUrl=receiver.url))
        [callback] = await receiver.wait_for(1)
    assert callback.form["verificationStatus"] == "DENIED_FRAUD"


def test_emulator_thread_serves_sync_code() -> None:
    with (
        EmulatorThread(processing_delay=0, api_token="tok", api_secret="sec") as emu,
        httpx.Client(base_url=emu.base_url, auth=("tok", "sec"), headers=API_HEADERS) as client,
    ):
        assert (emu.api_token, emu.api_secret) == ("tok", "sec")
        response = client.post(PERFORM, json=submission_body("threaded"))
        assert response.status_code == 200
        emu.set_faults(drop_rate=1.0)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post(PERFORM, json=submission_body("threaded"))
        assert emu.stats.duplicates == {"threaded": tuple(s["scanReference"] for s in emu.scans)}


def test_context_manager_form_and_config_object() -> None:
    config = EmulatorConfig(processing_delay=0, api_token="abc")
    with run_emulator_in_thread(config, rate_limit="1/min") as emu:
        assert emu.config.api_token == "abc"
        assert emu.faults.rate_limit == "1/min"
        with httpx.Client(base_url=emu.base_url, auth=emu.auth, headers=API_HEADERS) as client:
            statuses = [client.post(PERFORM, json=submission_body()).status_code for _ in range(2)]
    assert statuses == [200, 429]


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown emulator settings"):
        EmulatorThread(procesing_delay=0)


def test_repr_shows_no_secret() -> None:
    config = EmulatorConfig(api_secret="very-secret-value", admin_token="admin-secret")
    assert "very-secret-value" not in repr(config)
    assert "admin-secret" not in repr(config)


@pytest.mark.parametrize(
    "changes",
    [
        {"api_token": ""},
        {"api_token": "a:b"},
        {"api_secret": ""},
        {"processing_delay": -1},
        {"max_body_bytes": 0},
    ],
)
def test_invalid_configs_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        EmulatorConfig(**changes)  # type: ignore[arg-type]


def _start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on http://127.0.0.1:"):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"unexpected first line {line!r}; stderr: {err}")
    return proc, line.removeprefix("listening on ")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    return err


@pytest.mark.parametrize(
    "entry",
    [["-m", "netverify_async.emulator"], ["-m", "netverify_async", "emulator"]],
    ids=["python -m netverify_async.emulator", "netverify-async emulator"],
)
def test_command_line_serves_on_a_free_port(entry: list[str]) -> None:
    proc, base_url = _start(
        [*entry, "--port", "0", "--processing-delay", "0", "--api-secret", "cli-secret", "--error", "503=1.0"]
    )
    try:
        with httpx.Client(base_url=base_url, headers=API_HEADERS, timeout=10) as client:
            refused = client.post(PERFORM, json=submission_body(), auth=("emulator-api-token", "wrong"))
            assert refused.status_code == 403
            injected = client.post(PERFORM, json=submission_body(), auth=("emulator-api-token", "cli-secret"))
            assert injected.status_code == 503
            faults = client.get("/__emulator/faults").json()
            assert faults["errors"] == {"503": 1.0}
    finally:
        err = _stop(proc)
    assert "cli-secret" not in err


def test_command_line_reports_bad_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "netverify_async.emulator", "--port", "0", "--rate-limit", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "rate rule" in result.stderr
    assert result.stdout == ""


def test_public_names_are_what_all_says() -> None:
    import netverify_async.emulator as package

    public = {name for name in dir(package) if not name.startswith("_")}
    assert set(package.__all__) <= public
    for name in package.__all__:
        module = getattr(getattr(package, name), "__module__", "netverify_async.emulator")
        assert not module.startswith("netverify_async.emulator._"), name


ENTRIES = pytest.mark.parametrize(
    "entry",
    [["-m", "netverify_async.emulator"], ["-m", "netverify_async", "emulator"]],
    ids=["python -m netverify_async.emulator", "netverify-async emulator"],
)


@ENTRIES
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_start_up_prints_one_line_and_a_signal_is_a_clean_shutdown(entry: list[str], sig: str) -> None:
    """As the README says: one line on stdout (``listening on URL``), and exit status 0 on shutdown."""
    import signal

    proc, base_url = _start([*entry, "--port", "0", "--processing-delay", "0"])
    try:
        with httpx.Client(base_url=base_url, headers=API_HEADERS, timeout=10) as client:
            assert client.get("/__emulator/health").json() == {"ok": True}
    finally:
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert out == ""  # nothing after the first line
    assert err == ""


def _run(args: list[str], *, block_uvicorn: bool = False) -> subprocess.CompletedProcess[str]:
    if block_uvicorn:  # as in an installation without the emulator extra
        code = "import sys, runpy; sys.modules['uvicorn'] = None; sys.argv = ['x', *sys.argv[1:]]; "
        code += "runpy.run_module(sys.argv.pop(1), run_name='__main__')"
        args = ["-c", code, *args[1:]] if args[0] == "-m" else args
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


@ENTRIES
def test_a_port_out_of_range_is_a_usage_error(entry: list[str]) -> None:
    result = _run([*entry, "--port", "99999"])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "error: argument --port: must be from 0 to 65535 (0 picks a free port)"
    )
    assert len(result.stderr.strip().splitlines()) == 2  # a short usage line and the error
    assert result.stdout == ""


@ENTRIES
def test_a_port_in_use_is_one_line_naming_it(entry: list[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = _run([*entry, "--port", str(port)])
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: address already in use "
        "(choose another --port, or --port 0 for a free one)"
    )


@ENTRIES
def test_without_the_emulator_extra_one_line_says_what_to_install(entry: list[str]) -> None:
    result = _run([*entry, "--port", "0"], block_uvicorn=True)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "pip install 'netverify-async[emulator]'" in line


def test_a_shutdown_with_a_request_in_flight_is_quiet() -> None:
    """A latency fault still running when the grace period ends: one line from uvicorn, no traceback."""
    import signal
    import threading
    import time

    proc, base_url = _start(["-m", "netverify_async.emulator", "--port", "0", "--latency", "5"])
    seen: list[object] = []

    def submit() -> None:
        try:
            answer = httpx.post(
                base_url + PERFORM, json=submission_body(), headers=API_HEADERS, timeout=30,
                auth=("emulator-api-token", "emulator-api-secret"),
            )  # fmt: skip
            seen.append(answer.status_code)
        except httpx.HTTPError as exc:
            seen.append(type(exc).__name__)

    client = threading.Thread(target=submit)
    client.start()
    try:
        time.sleep(1.0)  # the request is in its 5 s of latency
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        client.join(30)
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert seen and seen != [200]  # the client saw its request cut off
