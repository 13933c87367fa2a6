"""The wire format on its own: signatures, AES envelopes and reply text."""

from __future__ import annotations

import base64

import pytest
from wechatpy.crypto import WeChatCrypto

from bot.errors import RefusedRequest
from bot.protocol import MAX_REPLY_TEXT_BYTES, MessageCrypto, clean_text, sign
from tests.conftest import AES_KEY, OLD_AES_KEY


def test_signature_is_sha1_of_sorted_parts() -> None:
    import hashlib

    assert sign("tok", "123", "abc") == hashlib.sha1(b"123abctok").hexdigest()
    assert sign("tok", "123", "abc") == sign("abc", "tok", "123")


def test_envelope_round_trip_matches_wechatpy() -> None:
    ours = MessageCrypto("tok", "wxapp", AES_KEY)
    reference = WeChatCrypto("tok", AES_KEY, "wxapp")
    sealed = ours.encrypt("<xml><A>1</A></xml>", 0, "nonce1", "1700000000")
    assert reference.decrypt_message(sealed, _msg_signature(sealed), "1700000000", "nonce1") == (
        "<xml><A>1</A></xml>"
    )


def _msg_signature(sealed: str) -> str:
    from bot.protocol import parse_xml

    return str(parse_xml(sealed)["MsgSignature"])


def test_padding_is_to_a_multiple_of_32_bytes() -> None:
    crypto = MessageCrypto("tok", "wxapp", AES_KEY)
    from bot.protocol import parse_xml

    for size in range(0, 70, 7):
        encrypt = parse_xml(crypto.encrypt("x" * size, 0, "n", "1"))["Encrypt"]
        assert len(base64.b64decode(encrypt)) % 32 == 0


def test_previous_key_opens_and_is_reported() -> None:
    old = MessageCrypto("tok", "wxapp", OLD_AES_KEY)
    both = MessageCrypto("tok", "wxapp", AES_KEY, OLD_AES_KEY)
    from bot.protocol import parse_xml

    encrypt = parse_xml(old.encrypt("<xml/>", 0, "n", "1"))["Encrypt"]
    assert both.decrypt(encrypt) == ("<xml/>", 1)


def test_garbage_ciphertext_is_refused() -> None:
    crypto = MessageCrypto("tok", "wxapp", AES_KEY)
    for garbage in ("", "abc", base64.b64encode(b"x" * 32).decode(), "!!!"):
        with pytest.raises(RefusedRequest):
            crypto.decrypt(garbage)


def test_long_text_is_cut_on_a_character_boundary() -> None:
    text = clean_text("松山湖" * 2000)
    assert len(text.encode("utf-8")) <= MAX_REPLY_TEXT_BYTES
    assert text.endswith("…")


def test_xml_invalid_characters_are_dropped() -> None:
    assert clean_text("a\x00b\x1fc\ufffe") == "abc"


def test_two_taps_in_one_second_are_two_deliveries() -> None:
    """Tests tapping one entry twice within a second lost the second tap as a 'retry'."""
    from bot.platform_sim import Platform
    from bot.protocol import Envelope, parse_xml, read_incoming

    first, second = (Platform.click("oX", "HALL_INFO") for _ in range(2))
    ids = {read_incoming(Envelope(x, parse_xml(x))).delivery_id for x in (first, second)}
    assert len(ids) == 2


def test_each_sealed_reply_starts_with_a_fresh_unpredictable_prefix() -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from bot.protocol import parse_xml

    crypto = MessageCrypto("tok", "wxapp", AES_KEY)
    key = base64.b64decode(AES_KEY + "=")
    prefixes = set()
    for _ in range(50):
        sealed = crypto.encrypt("<xml><A>1</A></xml>", 0, "nonce1", "1700000000")
        data = base64.b64decode(str(parse_xml(sealed)["Encrypt"]))
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        prefix = (decryptor.update(data) + decryptor.finalize())[:16]
        assert int(prefix, 16) >= 0  # 16 hex digits: printable, as wechatpy's own prefix is
        prefixes.add(prefix)
    assert len(prefixes) == 50
