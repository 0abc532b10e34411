"""Logging: a NullHandler on the package logger, every logger documented, and the NETVERIFY_LOG switch."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import netverify_async
from netverify_async import _logging

PACKAGE = Path(netverify_async.__file__).resolve().parent


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=60
    )


def test_the_package_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("netverify_async").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def logger_names_in_the_source() -> set[str]:
    """Every ``logging.getLogger("...")`` / ``getLogger(__name__)`` in the package, as the name it gives."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {  # module-level NAME = "text"
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger"):
                continue
            [arg] = node.args or [ast.Constant("")]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            elif isinstance(arg, ast.Name) and arg.id == "__name__":
                names.add(module)
            elif isinstance(arg, ast.Name) and arg.id in constants:
                names.add(constants[arg.id])
            else:
                pytest.fail(f"{path}: a logger name that is not a literal, a module constant or __name__")
    names.discard("")  # the root logger (e.g. the CLI's basicConfig) is not one of ours
    return names


def test_every_logger_of_the_package_is_listed_and_documented() -> None:
    found = logger_names_in_the_source()
    used = {name for name in found if name.split(".")[0] == "netverify_async"}
    assert used, "no logger found: the scan is broken"
    # other libraries' loggers the package only adjusts (the emulator's command line filters uvicorn's)
    assert found - used <= {"uvicorn.error"}, found - used
    assert used <= set(_logging.LOGGER_NAMES), used - set(_logging.LOGGER_NAMES)
    doc = _logging.__doc__ or ""
    for name in _logging.LOGGER_NAMES:
        assert f"``{name}``" in doc, name
        assert name == "netverify_async" or name.startswith("netverify_async.")


def test_nothing_is_printed_without_configuration() -> None:
    result = run_python(
        "import logging, netverify_async; logging.getLogger('netverify_async.batch').error('probe')"
    )
    assert result.returncode == 0
    assert result.stderr == ""  # the NullHandler keeps logging's last-resort handler quiet


@pytest.mark.parametrize("value", ["debug", "DEBUG", " Debug "])
def test_netverify_log_debug_sends_records_to_stderr(value: str) -> None:
    code = (
        "import logging, netverify_async\n"
        "logging.getLogger('netverify_async.ratelimit').debug('probe %d', 1)\n"
        "logging.getLogger('other').warning('not ours')\n"
    )
    result = run_python(code, NETVERIFY_LOG=value)
    assert result.returncode == 0
    [line] = result.stderr.splitlines()[:1]
    assert line.endswith("DEBUG netverify_async.ratelimit: probe 1")
    assert "DEBUG other" not in result.stderr  # only the package's logger is configured


def test_netverify_log_info_leaves_debug_out() -> None:
    code = (
        "import logging, netverify_async\n"
        "log = logging.getLogger('netverify_async')\n"
        "log.debug('hidden'); log.info('shown')\n"
    )
    result = run_python(code, NETVERIFY_LOG="info")
    assert "shown" in result.stderr and "hidden" not in result.stderr


def test_an_unknown_value_is_ignored_with_a_warning() -> None:
    result = run_python("import netverify_async", NETVERIFY_LOG="verbose")
    assert result.returncode == 0
    assert "NETVERIFY_LOG='verbose' is ignored: use one of debug, info, warning, error" in result.stderr


def test_configuring_twice_adds_one_handler() -> None:
    logger = logging.getLogger("netverify_async")
    before = list(logger.handlers)
    level = logger.level
    try:
        first = _logging.configure_from_environment({"NETVERIFY_LOG": "warning"})
        second = _logging.configure_from_environment({"NETVERIFY_LOG": "warning"})
        assert first is second is _logging.environment_handler()
        assert len(logger.handlers) == len(before) + (0 if first in before else 1)
    finally:
        logger.handlers[:] = before
        logger.setLevel(level)


def test_the_cli_prints_each_record_once_with_netverify_log(tmp_path: Path) -> None:
    """The CLI's own logging setup does not repeat what NETVERIFY_LOG already prints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    env["NETVERIFY_LOG"] = "debug"
    result = subprocess.run(
        [sys.executable, "-m", "netverify_async", "-v", "status", "abc", "--emulator", "http://127.0.0.1:9"],
        capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    attempts = [line for line in result.stderr.splitlines() if "attempt=1 failed:" in line]
    assert len(attempts) == 1, result.stderr
