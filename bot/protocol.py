"""WeChat's wire format: signatures, AES envelopes, parsing and passive reply XML."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from wechatpy import parse_message
from wechatpy.crypto import PrpCrypto
from wechatpy.messages import BaseMessage
from wechatpy.replies import TextReply, TransferCustomerServiceReply

from bot.errors import RefusedRequest

# WeChat shows a text reply whole up to about 2,048 bytes; leave room for the envelope.
MAX_REPLY_TEXT_BYTES = 2000
ELLIPSIS = "…"
# The deepest a platform message nests (SendPicsInfo > PicList > item > PicMd5Sum), with room.
MAX_XML_DEPTH = 8
# Characters XML 1.0 cannot carry at all, even inside CDATA.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_NONCE = re.compile(r"[0-9A-Za-z]{1,64}")
# How far a delivery's timestamp may be from our clock; the retry records outlive it.
MAX_CLOCK_SKEW_S = 600


def sign(*parts: str) -> str:
    """Return WeChat's signature: SHA1 of the sorted parts joined together."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


class _PrpCrypto(PrpCrypto):
    """wechatpy's AES envelope, with its 16-byte random prefix drawn from `secrets`.

    wechatpy draws it with random.sample, which is neither unpredictable nor cheap.
    """

    def get_random_string(self) -> str:
        return secrets.token_hex(8)


class MessageCrypto:
    """AES envelopes with the current EncodingAESKey and, during a rotation, the previous one."""

    def __init__(self, token: str, app_id: str, aes_key: str, previous_key: str = "") -> None:
        self.token = token
        self.app_id = app_id
        self._keys = [_PrpCrypto(_key_bytes(k)) for k in (aes_key, previous_key) if k]

    @property
    def has_key(self) -> bool:
        return bool(self._keys)

    def decrypt(self, encrypt: str) -> tuple[str, int]:
        """Return the plaintext XML and the index of the key that opened it."""
        for index, crypto in enumerate(self._keys):
            try:
                return crypto.decrypt(encrypt, self.app_id), index
            except Exception:
                continue
        raise RefusedRequest(400, "ciphertext does not open with any key for this appid")

    def encrypt(self, xml: str, key_index: int, nonce: str, timestamp: str) -> str:
        """Wrap a reply in the envelope WeChat expects, sealed with the key that worked."""
        encrypt = self._keys[key_index].encrypt(xml, self.app_id).decode()
        signature = sign(self.token, timestamp, nonce, encrypt)
        return (
            f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        )

    def seal(self, xml: str, timestamp: str | None = None, nonce: str | None = None) -> str:
        """Encrypt as the platform does for an inbound message (used by the simulator)."""
        return self.encrypt(xml, 0, nonce or secrets.token_hex(5), timestamp or now_ts())


def _key_bytes(aes_key: str) -> bytes:
    import base64

    return base64.b64decode(aes_key + "=")


def now_ts() -> str:
    return str(int(time.time()))


@dataclass(slots=True)
class Envelope:
    """What came in: the plaintext XML and its fields, and how the reply must go back."""

    xml: str
    fields: dict[str, Any]
    encrypted: bool = False
    key_index: int = 0


def open_envelope(
    body: bytes, query: Mapping[str, str], crypto: MessageCrypto, mode: str, now_s: float = 0.0
) -> Envelope:
    """Check the signature, refuse declarations and open the AES envelope when there is one."""
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    if not timestamp.isascii() or not timestamp.isdecimal() or not _NONCE.fullmatch(nonce):
        raise RefusedRequest(400, "timestamp and nonce are required, digits and letters only")
    if not signature_matches(sign(crypto.token, timestamp, nonce), query.get("signature")):
        raise RefusedRequest(403, "signature does not match")
    # A signed query replayed after the retry window would run its handler again.
    if abs(int(timestamp) - (now_s or time.time())) > MAX_CLOCK_SKEW_S:
        raise RefusedRequest(403, "timestamp is outside the accepted window")
    if _declares(body):
        raise RefusedRequest(400, "DOCTYPE and ENTITY declarations are not accepted")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RefusedRequest(400, "body is not UTF-8") from None
    text = _strip_invalid(text)
    outer = parse_xml(text)
    encrypt = outer.get("Encrypt")
    # A body that carries Encrypt is answered from it alone, whatever the query says: plain
    # fields beside it (compatible mode) are not covered by any signature.
    if encrypt is None and query.get("encrypt_type", "raw") != "aes":
        if mode == "safe":
            raise RefusedRequest(400, "safe mode accepts encrypted messages only")
        return Envelope(text, outer)
    if not isinstance(encrypt, str) or not crypto.has_key:
        raise RefusedRequest(400, "encrypted message without Encrypt or without a key")
    expected = sign(crypto.token, timestamp, nonce, encrypt)
    if not signature_matches(expected, query.get("msg_signature")):
        raise RefusedRequest(403, "msg_signature does not match")
    xml, key_index = crypto.decrypt(encrypt)
    if _declares(xml.encode("utf-8")):
        raise RefusedRequest(400, "DOCTYPE and ENTITY declarations are not accepted")
    xml = _strip_invalid(xml)
    return Envelope(xml, parse_xml(xml), encrypted=True, key_index=key_index)


def _declares(body: bytes) -> bool:
    # A declaration can only stand before the root element; after it, "<!DOCTYPE" is text a
    # citizen typed (inside CDATA), which must be answered, not refused.
    root = body.find(b"<xml")
    return bool(_DECLARATION.search(body if root < 0 else body[:root]))


def _strip_invalid(text: str) -> str:
    # A control character a citizen typed may reach us raw; XML 1.0 cannot carry it, and a
    # refusal would show the citizen "service unavailable", so it is dropped instead.
    return _XML_INVALID.sub("", text)


def parse_xml(text: str) -> dict[str, Any]:
    """Return the fields under <xml> as a dict (nested elements as dicts, repeats as lists)."""
    try:
        root = ElementTree.fromstring(text)
    except (ElementTree.ParseError, ValueError):
        raise RefusedRequest(400, "body is not well-formed XML") from None
    if root.tag != "xml" or len(root) == 0:
        raise RefusedRequest(400, "root element must be <xml> with fields")
    return _children(root)


def _children(element: ElementTree.Element, depth: int = 0) -> dict[str, Any]:
    # The shape xmltodict gives (what wechatpy's own parser sees), at a third of its cost.
    if depth > MAX_XML_DEPTH:
        raise RefusedRequest(400, "XML is nested deeper than any WeChat message")
    out: dict[str, Any] = {}
    for child in element:
        value: Any = _children(child, depth + 1) if len(child) else (child.text or "")
        if child.tag not in out:
            out[child.tag] = value
        elif isinstance(out[child.tag], list):
            out[child.tag].append(value)
        else:
            out[child.tag] = [out[child.tag], value]
    return out


@dataclass(slots=True)
class Incoming:
    """One inbound message or event, in the project's words."""

    openid: str
    account: str
    msg_type: str
    create_time: str
    raw: dict[str, Any]
    xml: str
    event: str = ""
    event_key: str = ""
    text: str = ""
    scene: str = ""
    is_voice: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    _message: BaseMessage | None = None

    @property
    def message(self) -> BaseMessage:
        """Return wechatpy's typed message, parsed on first use (most handlers never ask)."""
        if self._message is None:
            self._message = parse_message(self.xml)
        return self._message

    @property
    def delivery_id(self) -> str:
        """Identify a delivery so that WeChat's retries of it are recognised."""
        raw = self.raw
        if self.msg_type == "event":
            parts = [self.openid, self.create_time, raw.get("Event", ""), self.event_key]
            if raw.get("MsgID"):
                parts.append(str(raw["MsgID"]))
            elif self.event.startswith("subscribe_msg"):
                # Receipts carry their MsgID inside a list: two in one second differ only there.
                parts.append(hashlib.sha1(self.xml.encode("utf-8")).hexdigest()[:16])
            return "e:" + ":".join(parts)
        return f"m:{self.openid}:{self.create_time}:{raw.get('MsgId', '')}"

    @property
    def location(self) -> tuple[float, float] | None:
        """Return (latitude, longitude) from a location message or a location event."""
        raw = self.raw
        pairs = [
            (raw.get("Location_X"), raw.get("Location_Y")),
            (raw.get("Latitude"), raw.get("Longitude")),
        ]
        info = raw.get("SendLocationInfo")
        if isinstance(info, dict):
            pairs.append((info.get("Location_X"), info.get("Location_Y")))
        for lat, lon in pairs:
            try:
                point = float(lat), float(lon)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if -90 <= point[0] <= 90 and -180 <= point[1] <= 180:
                return point
        return None


def read_incoming(envelope: Envelope) -> Incoming:
    """Turn an opened envelope into an Incoming, whatever the message type."""
    raw = envelope.fields
    openid, account = raw.get("FromUserName"), raw.get("ToUserName")
    msg_type = raw.get("MsgType")
    if not all(isinstance(v, str) and v for v in (openid, account, msg_type)):
        raise RefusedRequest(400, "FromUserName, ToUserName and MsgType are required")
    incoming = Incoming(
        openid=str(openid),
        account=str(account),
        msg_type=str(msg_type).lower(),
        create_time=str(raw.get("CreateTime", "")),
        raw=raw,
        xml=envelope.xml,
    )
    if incoming.msg_type == "event":
        incoming.event = str(raw.get("Event") or "").lower()
        key = raw.get("EventKey")
        incoming.event_key = key.strip() if isinstance(key, str) else ""
        incoming.scene = _scene_of(incoming)
    elif incoming.msg_type == "text":
        incoming.text = _as_text(raw.get("Content"))
    elif incoming.msg_type == "voice":
        incoming.text = _as_text(raw.get("Recognition"))
        incoming.is_voice = True
    return incoming


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _scene_of(incoming: Incoming) -> str:
    """Return the QR scene, the same whether it came by follow, by SCAN or by the menu scanner."""
    event, key = incoming.event, incoming.event_key
    if event == "subscribe" and key.startswith("qrscene_"):
        return key[len("qrscene_") :]
    if event == "scan":
        return key
    if event in ("scancode_push", "scancode_waitmsg"):
        info = incoming.raw.get("ScanCodeInfo")
        result = info.get("ScanResult") if isinstance(info, dict) else None
        if isinstance(result, str) and ":" in result and "/" not in result:
            return result.strip()
    return ""


def clean_text(text: str, max_bytes: int = MAX_REPLY_TEXT_BYTES) -> str:
    """Make any text safe for a CDATA section and short enough for WeChat to show whole."""
    text = _XML_INVALID.sub("", text)
    data = text.encode("utf-8")
    if len(data) > max_bytes:
        cut = data[: max_bytes - len(ELLIPSIS.encode())].decode("utf-8", "ignore")
        line_end = cut.rfind("\n")
        if line_end > len(cut) * 3 // 4:
            cut = cut[:line_end]
        text = cut.rstrip() + ELLIPSIS
    return text


def _cdata_safe(text: str) -> str:
    # wechatpy wraps values in CDATA as they are; "]]>" would end the section early.
    return text.replace("]]>", "]]]]><![CDATA[>")


def text_reply_xml(incoming: Incoming, text: str) -> str:
    reply = TextReply(
        source=_cdata_safe(incoming.account),
        target=_cdata_safe(incoming.openid),
        content=_cdata_safe(clean_text(text)),
    )
    return str(reply.render())


def transfer_reply_xml(incoming: Incoming) -> str:
    reply = TransferCustomerServiceReply(
        source=_cdata_safe(incoming.account), target=_cdata_safe(incoming.openid)
    )
    return str(reply.render())
