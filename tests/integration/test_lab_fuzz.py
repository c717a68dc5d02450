"""The lab's WS-Man endpoint under malformed requests: garbage bodies, truncated and mutated
envelopes, unknown actions, missing or bad ShellIds, wrong content types, huge headers and
bodies, bad NTLM and Basic tokens, XML bombs, plain HTTP to an HTTPS port.

Every request gets an HTTP error (4xx, or 5xx with a WS-Man SOAP fault) or a closed connection,
never a success and never a hang (each request is bounded); afterwards the lab process is alive
and a real pypsrp session works. The lab runs in its own process (the default), so a crash of
the lab would show as a dead pid, not as a dead test.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator

import pytest
import requests
import spnego
from conftest import LabClient, LabFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raorch.lab import LabHandle

WAIT = 60.0  # bound of one request, so that a hang fails the test instead of stalling it

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
ACTIONS = [
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete",
    SHELL + "Command",
    SHELL + "Receive",
    SHELL + "Send",
    SHELL + "Signal",
    SHELL + "Nonsense",
    "",
    "urn:raorch:unknown",
]
BODIES = [
    "",
    "<rsp:Shell><creationXml xmlns='http://schemas.microsoft.com/powershell'>{b64}"
    "</creationXml></rsp:Shell>",
    "<rsp:Shell/>",
    "<rsp:CommandLine CommandId='{uuid}'><rsp:Command/><rsp:Arguments>{b64}</rsp:Arguments>"
    "</rsp:CommandLine>",
    "<rsp:CommandLine CommandId='not-a-uuid'/>",
    "<rsp:Receive><rsp:DesiredStream CommandId='{uuid}'>stdout</rsp:DesiredStream></rsp:Receive>",
    "<rsp:Send><rsp:Stream Name='pr' CommandId='{uuid}'>{b64}</rsp:Stream></rsp:Send>",
    "<rsp:Send><rsp:Stream Name='pr'>%%%not base64%%%</rsp:Stream></rsp:Send>",
    "<rsp:Signal CommandId='{uuid}'><rsp:Code>powershell/signal/crtl_c</rsp:Code></rsp:Signal>",
    "<rsp:Signal/>",
]

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def envelope(action: str, shell_id: str | None, timeout: str, body: str) -> str:
    selector = (
        ""
        if shell_id is None
        else f"<wsman:SelectorSet><wsman:Selector Name='ShellId'>{shell_id}</wsman:Selector>"
        "</wsman:SelectorSet>"
    )
    return (
        f"<s:Envelope xmlns:s='{NS['s']}' xmlns:wsa='{NS['wsa']}' xmlns:wsman='{NS['wsman']}' "
        f"xmlns:rsp='{NS['rsp']}'><s:Header><wsa:Action>{action}</wsa:Action>"
        f"<wsa:MessageID>uuid:{uuid.uuid4()}</wsa:MessageID>"
        "<wsman:ResourceURI>http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
        f"</wsman:ResourceURI>{selector}<wsman:OperationTimeout>{timeout}"
        f"</wsman:OperationTimeout></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    action = draw(st.sampled_from(ACTIONS) | st.text(max_size=40))
    # Fresh ShellIds: never one of a live shell, so that no Receive is held open.
    shell_id = draw(
        st.sampled_from([None, "", "not-a-shell", str(uuid.uuid4()).upper(), "<x/>", "&amp;"])
    )
    timeout = draw(st.sampled_from(["PT1S", "PT0S", "PT99999999999S", "P1D", "junk", "PT-5S"]))
    body = draw(st.sampled_from(BODIES)).format(
        b64=base64.b64encode(draw(st.binary(max_size=200))).decode(), uuid=uuid.uuid4()
    )
    text = envelope(action, shell_id, timeout, body).encode()
    cut = draw(st.none() | st.integers(0, len(text)))
    if cut is not None:
        text = text[:cut]  # truncated XML
    for _ in range(draw(st.integers(0, 3))):  # byte flips
        if text:
            i = draw(st.integers(0, len(text) - 1))
            text = text[:i] + bytes([draw(st.integers(0, 255))]) + text[i + 1 :]
    return text


def basic(lab: LabHandle) -> str:
    token = base64.b64encode(f"{lab.username}:{lab.password}".encode()).decode()
    return f"Basic {token}"


SOAP = "application/soap+xml;charset=UTF-8"


def post(
    session: requests.Session,
    url: str,
    body: bytes,
    headers: dict[str, str],
) -> requests.Response:
    return session.post(url, data=body, headers=headers, timeout=WAIT)


def assert_refused(resp: requests.Response, body: bytes) -> None:
    """An HTTP error; a 5xx from the WS-Man layer is a SOAP fault."""
    if not body and resp.status_code == 200:
        return  # an empty authenticated POST is how pypsrp sets up encryption: allowed
    assert 400 <= resp.status_code < 600, (resp.status_code, body[:200], resp.content[:300])
    if resp.status_code == 500 and resp.content.startswith(b"<s:Envelope"):
        assert b"<s:Fault>" in resp.content, resp.content[:300]


def assert_alive(lab: LabHandle, lab_client: LabClient) -> None:
    os.kill(lab.pid, 0)  # raises if the lab process died
    run = lab_client.run_batch(lab, lab.hosts[0], [{"Op": "GetFacts"}])
    assert not run.had_errors and run.outputs, run.errors


@pytest.fixture(scope="module")
def http_lab(lab_factory: LabFactory) -> LabHandle:
    # Basic over plain HTTP reaches the XML parser with readable bodies; NTLM tests the
    # handshake parser. Both methods on one lab.
    return lab_factory(hosts=2, scheme="http", auth="basic,ntlm")


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def url(lab: LabHandle, host: str | None = None, scheme: str = "http") -> str:
    return f"{scheme}://{lab.address}:{lab.ports[host or lab.hosts[0]]}/wsman"


@FUZZ
@given(body=envelopes(), content_type=st.sampled_from([SOAP, "text/plain", "", "x/y;;"]))
def test_authenticated_malformed_envelopes_get_faults(
    http_lab: LabHandle, session: requests.Session, body: bytes, content_type: str
) -> None:
    resp = post(
        session,
        url(http_lab),
        body,
        {"Authorization": basic(http_lab), "Content-Type": content_type},
    )
    assert_refused(resp, body)


@FUZZ
@given(body=st.binary(max_size=2000))
def test_garbage_bodies_get_errors(
    http_lab: LabHandle, session: requests.Session, body: bytes
) -> None:
    headers = {"Authorization": basic(http_lab), "Content-Type": SOAP}
    assert_refused(post(session, url(http_lab), body, headers), body)
    # without credentials: 401 whatever the body
    anonymous = post(session, url(http_lab), body, {"Content-Type": SOAP})
    assert anonymous.status_code == 401


@FUZZ
@given(
    scheme=st.sampled_from(["Negotiate", "NTLM", "Basic", "Kerberos", "", "negotiate"]),
    token=st.binary(max_size=600),
    as_base64=st.booleans(),
)
def test_bad_authorization_tokens_get_401(
    http_lab: LabHandle, session: requests.Session, scheme: str, token: bytes, as_base64: bool
) -> None:
    value = base64.b64encode(token).decode() if as_base64 else token.decode("latin-1")
    value = "".join(c for c in value if c not in "\r\n\x00")  # what a header can carry
    body = envelope(ACTIONS[0], None, "PT1S", "").encode()
    resp = post(
        session,
        url(http_lab),
        body,
        {"Authorization": f"{scheme} {value}".strip(), "Content-Type": SOAP},
    )
    assert resp.status_code in (400, 401), resp.status_code


def test_ntlm_handshake_with_a_forged_authenticate_message(http_lab: LabHandle) -> None:
    """A real NTLM NEGOTIATE, the lab's CHALLENGE, then a forged AUTHENTICATE (random bytes
    after a valid header, and a token of a wrong password): 401 on the same connection."""
    for forged in ("random", "wrong-password"):
        with requests.Session() as session:
            client = spnego.client(
                http_lab.username,
                http_lab.password + ("" if forged == "random" else "-wrong"),
                protocol="ntlm",
            )
            negotiate = client.step()
            assert negotiate is not None
            first = post(
                session,
                url(http_lab),
                b"",
                {"Authorization": "Negotiate " + base64.b64encode(negotiate).decode()},
            )
            assert first.status_code == 401
            challenge = first.headers["WWW-Authenticate"].split()[-1]
            if forged == "random":
                token = b"NTLMSSP\x00\x03\x00\x00\x00" + os.urandom(200)
            else:
                answer = client.step(base64.b64decode(challenge))
                assert answer is not None
                token = answer
            second = post(
                session,
                url(http_lab),
                b"",
                {"Authorization": "Negotiate " + base64.b64encode(token).decode()},
            )
            assert second.status_code == 401, (forged, second.status_code)


XXE = (
    b'<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'><s:Header/>"
    b"<s:Body>&x;</s:Body></s:Envelope>"
)


def billion_laughs() -> bytes:
    entities = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    )
    return (
        f'<?xml version="1.0"?><!DOCTYPE s:Envelope [{entities}]>'
        f"<s:Envelope xmlns:s='{NS['s']}'><s:Header><wsa:Action xmlns:wsa='{NS['wsa']}'>&l9;"
        "</wsa:Action></s:Header><s:Body/></s:Envelope>"
    ).encode()


def quadratic_blowup() -> bytes:
    big = "A" * 50_000
    return (
        f"<!DOCTYPE s:Envelope [<!ENTITY a \"{big}\">]><s:Envelope xmlns:s='{NS['s']}'>"
        f"<s:Header/><s:Body>{'&a;' * 20_000}</s:Body></s:Envelope>"
    ).encode()


@pytest.mark.parametrize(
    "name",
    ["billion-laughs", "quadratic-blowup", "external-entity", "utf16-billion-laughs"],
)
def test_xml_bombs_are_refused_unexpanded(
    name: str, http_lab: LabHandle, lab_client: LabClient, session: requests.Session
) -> None:
    body = {
        "billion-laughs": billion_laughs,
        "quadratic-blowup": quadratic_blowup,
        "external-entity": lambda: XXE,
        # The same bomb in another encoding: a byte search for "<!DOCTYPE" would miss it.
        "utf16-billion-laughs": lambda: (
            billion_laughs()
            .decode()
            .replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
            .encode("utf-16")
        ),
    }[name]()
    resp = post(session, url(http_lab), body, {"Authorization": basic(http_lab)})
    assert resp.status_code == 500 and b"<s:Fault>" in resp.content, resp.content[:300]
    assert b"Document Type Declaration" in resp.content
    assert b"lollol" not in resp.content and b"root:" not in resp.content
    assert len(resp.content) < 4000  # the fault, not an expansion
    assert_alive(http_lab, lab_client)


def test_deep_nesting_and_oversized_requests(
    http_lab: LabHandle, lab_client: LabClient, session: requests.Session
) -> None:
    auth = {"Authorization": basic(http_lab), "Content-Type": SOAP}
    deep = b"<a>" * 100_000 + b"</a>" * 100_000
    assert_refused(post(session, url(http_lab), deep, auth), deep)
    # more than the 16 MiB the lab accepts in one request
    huge = b"<s:Envelope>" + b"x" * (17 * 1024 * 1024)
    resp = post(session, url(http_lab), huge, auth)
    assert resp.status_code == 413
    # a header longer than the HTTP parser's limit, and a great many headers
    for headers in (
        {**auth, "X-Junk": "j" * 70_000},
        {**auth, **{f"X-Junk-{i}": "j" * 50 for i in range(2000)}},
    ):
        with requests.Session() as fresh:
            resp = post(fresh, url(http_lab), b"<x/>", headers)
        assert 400 <= resp.status_code < 500, resp.status_code
    # an encrypted-content type with Basic (no security context to unseal with)
    enc = {
        "Authorization": basic(http_lab),
        "Content-Type": 'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted"',
    }
    resp = post(session, url(http_lab), b"--Encrypted Boundary\r\njunk", enc)
    assert 400 <= resp.status_code < 600
    # other paths and methods
    assert session.get(url(http_lab), timeout=WAIT).status_code >= 400
    root = f"http://{http_lab.address}:{http_lab.ports[http_lab.hosts[0]]}/../../etc/passwd"
    assert session.post(root, timeout=WAIT).status_code == 404
    assert_alive(http_lab, lab_client)


def test_plain_http_to_an_https_port(lab_factory: LabFactory, lab_client: LabClient) -> None:
    lab = lab_factory(hosts=2)  # HTTPS + NTLM
    for body in (b"", envelope(ACTIONS[0], None, "PT1S", "").encode(), os.urandom(3000)):
        with requests.Session() as session, pytest.raises(requests.exceptions.ConnectionError):
            post(session, url(lab), body, {"Authorization": basic(lab)})
    assert_alive(lab, lab_client)


def test_the_lab_survived_the_whole_module(
    http_lab: LabHandle, lab_client: LabClient, session: requests.Session
) -> None:
    """Runs last in this module: after every case above, real sessions still work on every
    host, and an unknown action on a real shell is a fault, not a crash."""
    for host in http_lab.hosts:
        run = lab_client.run_batch(http_lab, host, [{"Op": "GetFacts"}])
        assert not run.had_errors and run.outputs[0]
    assert http_lab.stats()["total_requests"] > 600  # the fuzz cases reached it
    assert_alive(http_lab, lab_client)
