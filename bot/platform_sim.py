"""Play WeChat's side of the webhook: build, sign and seal deliveries, open the replies."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from bot.protocol import MessageCrypto, parse_xml, sign

ACCOUNT = "gh_0a1b2c3d4e5f"
_msg_ids = itertools.count(int(time.time() * 1000) * 1000)


_last_event_time = 0


def _event_time() -> int:
    """Return a CreateTime one second past the last event's at least.

    An event is known by openid, CreateTime and key: two taps of one entry within a second
    would be one delivery and its retry, and a test doing so would lose the second tap.
    """
    global _last_event_time
    _last_event_time = max(int(time.time()), _last_event_time + 1)
    return _last_event_time


def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build_xml(openid: str, msg_type: str, fields: dict[str, Any], create_time: int) -> str:
    """Return a delivery in the platform's plain XML shape."""
    parts = [
        f"<ToUserName>{cdata(ACCOUNT)}</ToUserName>",
        f"<FromUserName>{cdata(openid)}</FromUserName>",
        f"<CreateTime>{create_time}</CreateTime>",
        f"<MsgType>{cdata(msg_type)}</MsgType>",
    ]
    parts.extend(_field(name, value) for name, value in fields.items())
    return "<xml>" + "".join(parts) + "</xml>"


def _field(name: str, value: Any) -> str:
    if isinstance(value, dict):
        inner = "".join(_field(k, v) for k, v in value.items())
        return f"<{name}>{inner}</{name}>"
    if isinstance(value, int | float):
        return f"<{name}>{value}</{name}>"
    return f"<{name}>{cdata(str(value))}</{name}>"


@dataclass
class Delivery:
    """One POST as the platform makes it: query string and body."""

    query: dict[str, str]
    body: bytes
    xml: str


@dataclass
class Platform:
    """Signs and seals like WeChat for one account; `mode` is plain, compatible or safe."""

    token: str
    app_id: str
    aes_key: str = ""
    mode: str = "safe"
    crypto: MessageCrypto = field(init=False)

    def __post_init__(self) -> None:
        self.crypto = MessageCrypto(self.token, self.app_id, self.aes_key)

    def deliver(
        self, xml: str, *, timestamp: str | None = None, nonce: str | None = None
    ) -> Delivery:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or secrets.token_hex(5)
        query = {
            "signature": sign(self.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": _openid_of(xml),
        }
        if self.mode == "plain":
            return Delivery(query, xml.encode("utf-8"), xml)
        sealed = parse_xml(self.crypto.seal(xml, timestamp, nonce))
        encrypt = sealed["Encrypt"]
        query.update(encrypt_type="aes", msg_signature=sign(self.token, timestamp, nonce, encrypt))
        if self.mode == "safe":
            to_user = f"<ToUserName>{cdata(ACCOUNT)}</ToUserName>"
            body = f"<xml>{to_user}<Encrypt>{cdata(encrypt)}</Encrypt></xml>"
        else:
            body = xml.replace("</xml>", f"<Encrypt>{cdata(encrypt)}</Encrypt></xml>")
        return Delivery(query, body.encode("utf-8"), xml)

    def open_reply(self, body: str) -> dict[str, Any] | None:
        """Return the reply's fields, checking its signature when sealed; None for `success`."""
        if body in ("", "success"):
            return None
        fields = parse_xml(body)
        if "Encrypt" not in fields:
            return fields
        expected = sign(self.token, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
        if expected != fields["MsgSignature"]:
            raise ValueError("reply MsgSignature does not match")
        xml, _ = self.crypto.decrypt(fields["Encrypt"])
        return parse_xml(xml)

    # What a citizen does, as XML.

    @staticmethod
    def text(openid: str, content: str, create_time: int | None = None) -> str:
        return build_xml(
            openid,
            "text",
            {"Content": content, "MsgId": next(_msg_ids)},
            create_time or int(time.time()),
        )

    @staticmethod
    def voice(openid: str, recognition: str) -> str:
        fields = {
            "MediaId": "media_sim",
            "Format": "amr",
            "Recognition": recognition,
            "MsgId": next(_msg_ids),
        }
        return build_xml(openid, "voice", fields, int(time.time()))

    @staticmethod
    def event(openid: str, event: str, create_time: int | None = None, **fields: Any) -> str:
        return build_xml(openid, "event", {"Event": event, **fields}, create_time or _event_time())

    @classmethod
    def click(cls, openid: str, key: str) -> str:
        return cls.event(openid, "CLICK", EventKey=key)

    @staticmethod
    def location(openid: str, latitude: float, longitude: float, label: str = "") -> str:
        fields = {
            "Location_X": latitude,
            "Location_Y": longitude,
            "Scale": 15,
            "Label": label,
            "MsgId": next(_msg_ids),
        }
        return build_xml(openid, "location", fields, int(time.time()))

    @classmethod
    def scan(cls, openid: str, scene: str, *, as_new_follower: bool = False) -> str:
        if as_new_follower:
            return cls.event(openid, "subscribe", EventKey=f"qrscene_{scene}", Ticket="gQsim")
        return cls.event(openid, "SCAN", EventKey=scene, Ticket="gQsim")


def _openid_of(xml: str) -> str:
    start = xml.find("<FromUserName>")
    if start < 0:
        return ""
    end = xml.find("</FromUserName>", start)
    value = xml[start + len("<FromUserName>") : end]
    return escape(value.removeprefix("<![CDATA[").removesuffix("]]>"))
