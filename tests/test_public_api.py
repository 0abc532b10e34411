"""The public API is exactly what ``__all__`` says, and every name in it resolves."""

from __future__ import annotations

import subprocess
import sys
import types

import netverify_async


def test_every_name_in_all_resolves() -> None:
    for name in netverify_async.__all__:
        assert getattr(netverify_async, name) is not None, name


def test_no_public_name_outside_all() -> None:
    public = {
        name
        for name, value in vars(netverify_async).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name not in ("TYPE_CHECKING", "annotations")
    }
    assert public <= set(netverify_async.__all__)


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        netverify_async.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_stays_lazy() -> None:
    # (rich is left out: httpx itself imports it when it is installed)
    code = (
        "import sys, netverify_async\n"
        "heavy = [m for m in ('PIL', 'pycountry', 'aiohttp', 'redis', 'fastapi', 'uvicorn', 'sqlite3') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("netverify_async").joinpath("py.typed").is_file()


def test_public_classes_and_functions_show_the_public_module() -> None:
    import inspect

    import netverify_async

    shown = {
        name: getattr(netverify_async, name).__module__
        for name in netverify_async.__all__
        if inspect.isclass(getattr(netverify_async, name)) or inspect.isfunction(getattr(netverify_async, name))
    }
    private = {name: module for name, module in shown.items() if any(p.startswith("_") for p in module.split("."))}
    assert shown and not private
