"""Importing the package stays cheap: heavy dependencies load on first use only."""

from __future__ import annotations

import json
import subprocess
import sys

# (idna is not listed: the package imports httpx, which imports it)
HEAVY = ("pycountry", "PIL", "aiohttp", "cattrs")


def _modules_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_package_import_does_not_load_country_or_image_libraries() -> None:
    loaded = _modules_after("import netverify_async")
    assert not {"pycountry", "PIL", "aiohttp"} & loaded


def test_validation_module_import_is_light() -> None:
    loaded = _modules_after("import netverify_async._validation, netverify_async._models")
    assert not set(HEAVY) & loaded


def test_validating_a_request_loads_pycountry_but_not_pillow() -> None:
    code = (
        "from netverify_async import NetverifyRequest, Image\n"
        "NetverifyRequest('r-1', Image(b'\\xff\\xd8\\xff\\xe0', 'image/jpeg'), 'DEU', 'PASSPORT')"
    )
    loaded = _modules_after(code)
    assert "pycountry" in loaded
    assert "PIL" not in loaded
