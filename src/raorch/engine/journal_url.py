"""A journal's connection URL as raorch may show it: never with its password.

A PostgreSQL URL may carry a password (``postgresql://user:secret@host/db``, or
``?password=secret``). Every message, location and log line shows the URL masked
(``mask_url``), and any text that came from elsewhere (the driver's errors) is scrubbed of the
password first (``scrub``). Imports no driver: the CLI masks a URL it cannot even parse.
"""

from __future__ import annotations

from urllib.parse import unquote

MASK = "***"


def _is_secret(key: str) -> bool:
    # libpq's "password" and "sslpassword" (PostgreSQL documentation, "Connection Strings",
    # "Parameter Key Words").
    return "password" in unquote(key).casefold()


def url_secrets(url: str) -> list[str]:
    """The secrets written in ``url``, as written and percent-decoded (longest first)."""
    found: list[str] = []
    rest = url.split("://", 1)[1] if "://" in url else url
    authority, _, tail = rest.partition("/")
    userinfo, at, _ = authority.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    query = tail.partition("?")[2] if "?" in tail else rest.partition("?")[2]
    for pair in query.split("&"):
        key, eq, value = pair.partition("=")
        if eq and _is_secret(key):
            found.append(value)
    out = {s for f in found if f for s in (f, unquote(f))}
    return sorted(out, key=len, reverse=True)


def mask_url(url: str) -> str:
    """``url`` with its password (in the user part or the query) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return scrub(url, url)
    head, qmark, query = rest.partition("?")
    authority, slash, path = head.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.split(':', 1)[0]}:{MASK}@{hosts}"
    pairs = []
    for pair in query.split("&") if qmark else []:
        key, eq, _ = pair.partition("=")
        pairs.append(f"{key}={MASK}" if eq and _is_secret(key) else pair)
    return f"{scheme}://{authority}{slash}{path}{qmark}{'&'.join(pairs)}"


def scrub(text: str, url: str) -> str:
    """``text`` (an error from the driver, say) without any secret of ``url``."""
    for secret in url_secrets(url):
        text = text.replace(secret, MASK)
    return text
