"""The User-Agent rule shared by the client and the emulator (netverify_async._useragent)."""

from __future__ import annotations

import pytest

from netverify_async._useragent import is_descriptive_user_agent, user_agent_problem

DESCRIPTIVE = [
    "Example Corp SampleApp/1.0.1",
    "YourCompany YourApp/v1.0",
    "Acme Onboarding/2",
    "ACME-GmbH KYC-Service/3.4.5-rc1",
    "SampleApp/1.0 (Example Corp)",
    "Example Corp SampleApp/1.0.1 netverify-async/0.1.0 python-httpx/0.28.1",
    "  Example Corp SampleApp/1.0.1  ",
]

NOT_DESCRIPTIVE = {
    "missing": None,
    "empty": "",
    "blank": "   ",
    "http library": "python-httpx/0.28.1",
    "aiohttp": "Python/3.11 aiohttp/3.9.5",
    "curl with a name": "Acme curl/8.5.0",
    "this library only": "Acme netverify-async/0.1.0",
    "no business": "OtherApp/1.0.1",
    "no version": "Acme Widgets",
    "version not a number": "Example Corp SampleApp/latest",
    "browser": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "control character": "Example Corp SampleApp/1.0\x00",
    "non ascii": "Exämple Corp SampleApp/1.0",
    "too long": "Example Corp " + "x" * 250 + " SampleApp/1.0",
    "empty comment": "SampleApp/1.0 ()",
    "lone parenthesis": "(",
}


@pytest.mark.parametrize("value", DESCRIPTIVE)
def test_descriptive_user_agents(value: str) -> None:
    assert is_descriptive_user_agent(value)
    assert user_agent_problem(value) is None


@pytest.mark.parametrize("value", NOT_DESCRIPTIVE.values(), ids=NOT_DESCRIPTIVE.keys())
def test_user_agents_that_do_not_name_a_business_and_an_app(value: str | None) -> None:
    assert not is_descriptive_user_agent(value)
    problem = user_agent_problem(value)
    assert problem is not None
    if value and value.strip() and len(value) > 3:
        assert value.strip() not in problem  # the explanation never repeats the value
