"""The rule for a descriptive ``User-Agent`` header, shared by the client and the emulator.

Jumio asks every caller to send a User-Agent that names the business *and* the application with its version,
for example ``Example Corp SampleApp/1.0.1``; calls with a missing or suspicious User-Agent are answered 403.
The rule implemented here is deliberately simple and stable:

* the value is printable ASCII (no control characters) and at most :data:`MAX_USER_AGENT_LENGTH` characters;
* it contains an *application product*: a token ``Name/version`` whose version starts with a digit (an
  optional leading ``v`` is allowed: ``MyApp/v2``), and whose name is not a generic HTTP library, tool or
  browser (``python-httpx``, ``curl``, ``Mozilla``, ``netverify-async``...);
* it is not a browser's (a first token ``Mozilla/...``);
* a *business name* accompanies that product: at least one plain word (containing a letter, no ``/``) before
  it, or a parenthesised comment after it that contains a letter (``SampleApp/1.0 (Example Corp)``).

Extra product tokens are allowed anywhere, so ``Example Corp SampleApp/1.0.1 netverify-async/0.1.0`` is
descriptive: a library may append its own token to the caller's value.
"""

from __future__ import annotations

import re

__all__ = ["GENERIC_PRODUCTS", "MAX_USER_AGENT_LENGTH", "is_descriptive_user_agent", "user_agent_problem"]

#: Longest User-Agent value accepted (Jumio documents no limit; longer values are unlikely to be deliberate).
MAX_USER_AGENT_LENGTH = 255

#: Product names (lower case) of HTTP libraries, command line tools and browsers. They identify software,
#: not the calling business or its application, so they never count as the application product.
GENERIC_PRODUCTS = frozenset(
    {
        "aiohttp",
        "apache-httpclient",
        "applewebkit",
        "axios",
        "chrome",
        "curl",
        "go-http-client",
        "httpie",
        "httpx",
        "firefox",
        "gecko",
        "insomnia",
        "java",
        "libwww-perl",
        "mozilla",
        "netverify-async",
        "node",
        "node-fetch",
        "okhttp",
        "postmanruntime",
        "python",
        "python-httpx",
        "python-requests",
        "python-urllib",
        "python-urllib3",
        "requests",
        "safari",
        "undici",
        "urllib3",
        "wget",
    }
)

_PRODUCT = re.compile(r"[A-Za-z][A-Za-z0-9._+-]*/[vV]?[0-9][A-Za-z0-9._+-]*")
# A token: a parenthesised comment (may contain spaces), or a run of non-space characters.
_TOKEN = re.compile(r"\([^()]*\)|[^\s()]+")
_LETTER = re.compile(r"[A-Za-z]")


def user_agent_problem(user_agent: str | None) -> str | None:
    """Why ``user_agent`` is not descriptive, as a short sentence, or None when it is.

    The sentence never repeats the value itself.
    """
    if user_agent is None:
        return "the User-Agent header is missing"
    value = user_agent.strip()
    if not value:
        return "the User-Agent header is empty"
    if len(value) > MAX_USER_AGENT_LENGTH:
        return f"the User-Agent is longer than {MAX_USER_AGENT_LENGTH} characters"
    if not value.isascii() or not value.isprintable():
        return "the User-Agent contains non-ASCII or control characters"
    tokens = _TOKEN.findall(value)
    if tokens and tokens[0].lower().startswith("mozilla/"):
        return "the User-Agent is a browser's, not one naming a business and its application"
    for index, token in enumerate(tokens):
        if not _PRODUCT.fullmatch(token):
            continue
        if token.split("/", 1)[0].lower() in GENERIC_PRODUCTS:
            continue
        if any(_is_business_word(t) for t in tokens[:index]):
            return None
        if index + 1 < len(tokens) and _is_comment_with_name(tokens[index + 1]):
            return None
        return "the User-Agent names an application but no business (e.g. 'Example Corp SampleApp/1.0.1')"
    return "the User-Agent names no application with a version (e.g. 'Example Corp SampleApp/1.0.1')"


def is_descriptive_user_agent(user_agent: str | None) -> bool:
    """True when ``user_agent`` names a business and an application with a version, as Jumio requires.

    >>> is_descriptive_user_agent("Example Corp SampleApp/1.0.1")
    True
    >>> is_descriptive_user_agent("python-httpx/0.27.0")
    False
    """
    return user_agent_problem(user_agent) is None


def _is_business_word(token: str) -> bool:
    return "/" not in token and not token.startswith("(") and _LETTER.search(token) is not None


def _is_comment_with_name(token: str) -> bool:
    return token.startswith("(") and _LETTER.search(token) is not None
