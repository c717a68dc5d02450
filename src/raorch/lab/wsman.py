"""WS-Management SOAP envelopes of the Windows Remote Shell, server side.

Requests are parsed with ElementTree (a DTD is refused); responses are built as text (every
value put into them is a UUID, base64 or an escaped message), which is what keeps the lab's
CPU per session low.
Shapes follow [MS-WSMV] 3.1.4 (Create 3.1.4.5, Delete 3.1.4.6, Command 3.1.4.11,
Signal 3.1.4.12, Send 3.1.4.13, Receive 3.1.4.14) and the SOAP faults of [MS-WSMV] 2.2.4.10
and 3.1.4.1.31 (OperationTimeout, code 2150858793 = 0x80338029, which pypsrp retries).
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "wsmv": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "wst": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "pwsh": "http://schemas.microsoft.com/powershell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}

TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
ACTION_CREATE = TRANSFER + "Create"
ACTION_DELETE = TRANSFER + "Delete"
ACTION_COMMAND = SHELL + "Command"
ACTION_RECEIVE = SHELL + "Receive"
ACTION_SEND = SHELL + "Send"
ACTION_SIGNAL = SHELL + "Signal"
ACTION_FAULT = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
SIGNAL_TERMINATE = SHELL + "signal/Terminate"
SIGNAL_PS_CTRL_C = "powershell/signal/ctrl_c"
STATE_DONE = SHELL + "CommandState/Done"
STATE_RUNNING = SHELL + "CommandState/Running"
POWERSHELL_URI = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"

# [MS-WSMV] error codes (WinRM's winrm.h names).
ERROR_OPERATION_TIMEOUT = 2150858793  # ERROR_WSMAN_OPERATION_TIMEDOUT 0x80338029
ERROR_SHELL_NOT_FOUND = 2150858843  # ERROR_WSMAN_INVALID_SELECTORS 0x8033805B

_DURATION = re.compile(r"^PT(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


class WSManRequestError(Exception):
    """A request the lab cannot understand: answered with a SOAP fault."""

    def __init__(self, subcode: str, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.subcode = subcode
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Request:
    action: str
    message_id: str
    resource_uri: str
    shell_id: str | None
    operation_timeout: float  # seconds
    body: ET.Element


class _DTDRefused(Exception):
    pass


class _NoDTD(ET.TreeBuilder):
    """SOAP 1.2 (part 1, section 5) forbids a Document Type Declaration in an envelope. Refusing
    it when it starts, before any of its declarations is read, means no entity is ever defined:
    nothing to expand (billion laughs), nothing external to fetch, whatever the encoding."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise _DTDRefused


def parse_request(data: bytes) -> Request:
    parser = ET.XMLParser(target=_NoDTD())
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        raise WSManRequestError("s:Sender", f"the request is not valid XML: {exc}") from None
    except _DTDRefused:
        raise WSManRequestError(
            "s:Sender", "the request carries a Document Type Declaration, which SOAP forbids"
        ) from None
    header = root.find("s:Header", NS)
    body = root.find("s:Body", NS)
    if header is None or body is None:
        raise WSManRequestError("s:Sender", "the request is not a SOAP envelope")
    action = header.findtext("wsa:Action", "", NS).strip()
    message_id = header.findtext("wsa:MessageID", "", NS).strip()
    resource_uri = header.findtext("wsman:ResourceURI", "", NS).strip()
    shell_id = None
    for selector in header.iterfind("wsman:SelectorSet/wsman:Selector", NS):
        if selector.get("Name", "").lower() == "shellid":
            shell_id = (selector.text or "").strip().upper()
    timeout = 60.0
    match = _DURATION.match(header.findtext("wsman:OperationTimeout", "", NS).strip())
    if match:
        timeout = float(match.group(1) or 0) * 60 + float(match.group(2) or 0)
    return Request(action, message_id, resource_uri, shell_id, timeout, body)


def _envelope(action: str, relates_to: str, body: str, extra_ns: str = "") -> bytes:
    return (
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["wsa"]}" xmlns:w="{NS["wsman"]}" '
        f'xmlns:rsp="{NS["rsp"]}"{extra_ns}>'
        "<s:Header>"
        f"<a:Action>{action}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        "</s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def create_response(
    relates_to: str, shell_id: str, address: str, owner: str, client_ip: str
) -> bytes:
    """[MS-WSMV] 3.1.4.5.2: ResourceCreated with the ShellId selector, then the Shell."""
    body = (
        "<x:ResourceCreated>"
        f"<a:Address>{escape(address)}</a:Address>"
        "<a:ReferenceParameters>"
        f"<w:ResourceURI>{POWERSHELL_URI}</w:ResourceURI>"
        f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
        "</a:ReferenceParameters>"
        "</x:ResourceCreated>"
        f"<rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId>"
        f"<rsp:ResourceUri>{POWERSHELL_URI}</rsp:ResourceUri>"
        f"<rsp:Owner>{escape(owner)}</rsp:Owner><rsp:ClientIP>{escape(client_ip)}</rsp:ClientIP>"
        "<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
        "<rsp:InputStreams>stdin pr</rsp:InputStreams>"
        "<rsp:OutputStreams>stdout</rsp:OutputStreams>"
        "<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>"
        "<rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
        "</rsp:Shell>"
    )
    return _envelope(TRANSFER + "CreateResponse", relates_to, body, f' xmlns:x="{NS["wst"]}"')


def command_response(relates_to: str, command_id: str) -> bytes:
    body = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
    return _envelope(SHELL + "CommandResponse", relates_to, body)


def receive_response(
    relates_to: str, chunks: list[bytes], command_id: str | None, done: bool
) -> bytes:
    """[MS-WSMV] 3.1.4.14.2: one Stream per PSRP payload; CommandState for a command."""
    attr = f' CommandId="{command_id}"' if command_id else ""
    parts = [
        f'<rsp:Stream Name="stdout"{attr}>{base64.b64encode(c).decode()}</rsp:Stream>'
        for c in chunks
    ]
    if command_id:
        state = STATE_DONE if done else STATE_RUNNING
        exit_code = "<rsp:ExitCode>0</rsp:ExitCode>" if done else ""
        parts.append(
            f'<rsp:CommandState CommandId="{command_id}" State="{state}">'
            f"{exit_code}</rsp:CommandState>"
        )
    body = f'<rsp:ReceiveResponse SequenceID="0">{"".join(parts)}</rsp:ReceiveResponse>'
    return _envelope(SHELL + "ReceiveResponse", relates_to, body)


def empty_response(action: str, relates_to: str) -> bytes:
    bodies = {
        ACTION_SEND: "<rsp:SendResponse/>",
        ACTION_SIGNAL: "<rsp:SignalResponse/>",
        ACTION_DELETE: "",
    }
    return _envelope(action + "Response", relates_to, bodies.get(action, ""))


def fault(relates_to: str, subcode: str, message: str, code: int | None, machine: str) -> bytes:
    code_attr = f' Code="{code}"' if code is not None else ""
    value = "s:Receiver" if subcode.startswith("w:") else "s:Sender"
    body = (
        "<s:Fault>"
        f"<s:Code><s:Value>{value}</s:Value>"
        f"<s:Subcode><s:Value>{escape(subcode)}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(message)}</s:Text></s:Reason>'
        "<s:Detail>"
        f'<f:WSManFault{code_attr} Machine="{escape(machine)}">'
        f"<f:Message>{escape(message)}</f:Message></f:WSManFault>"
        "</s:Detail></s:Fault>"
    )
    return _envelope(ACTION_FAULT, relates_to, body, f' xmlns:f="{NS["f"]}"')


def timeout_fault(relates_to: str, machine: str) -> bytes:
    return fault(
        relates_to,
        "w:TimedOut",
        "The WS-Management service cannot complete the operation within the time specified in "
        "OperationTimeout.",
        ERROR_OPERATION_TIMEOUT,
        machine,
    )
