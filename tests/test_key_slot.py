"""Redis Cluster key slots: known values, hash tag rules, and agreement with a
bit-by-bit CRC16 written here from the definition."""

from hypothesis import given
from hypothesis import strategies as st

from engine._core import key_slot


def crc16_xmodem_bitwise(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def reference_slot(key: bytes) -> int:
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16_xmodem_bitwise(key) % 16384


def test_crc16_check_value() -> None:
    # The standard CRC16/XMODEM check value of "123456789" is 0x31C3.
    assert key_slot(b"123456789") == 0x31C3 == 12739


def test_known_slots_from_redis() -> None:
    assert key_slot(b"") == 0
    assert key_slot(b"foo") == 12182
    assert key_slot(b"bar") == 5061


def test_same_tag_same_slot() -> None:
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers")
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")


def test_empty_tag_hashes_whole_key() -> None:
    assert key_slot(b"foo{}{bar}") == crc16_xmodem_bitwise(b"foo{}{bar}") % 16384
    assert key_slot(b"foo{}{bar}") != key_slot(b"bar")


def test_first_close_brace_after_first_open_brace() -> None:
    assert key_slot(b"foo{{bar}}zap") == key_slot(b"{bar")
    assert key_slot(b"foo{bar}{zap}") == key_slot(b"bar")


def test_unclosed_brace_hashes_whole_key() -> None:
    assert key_slot(b"foo{bar") == crc16_xmodem_bitwise(b"foo{bar") % 16384
    assert key_slot(b"foo}bar{") == crc16_xmodem_bitwise(b"foo}bar{") % 16384


def test_bytes_like_keys() -> None:
    assert key_slot(bytearray(b"123456789")) == 12739
    assert key_slot(memoryview(b"x123456789")[1:]) == 12739


def test_str_is_refused() -> None:
    try:
        key_slot("foo")  # type: ignore[arg-type]
    except TypeError:
        return
    raise AssertionError("key_slot accepted str")


braces_and_letters = st.binary(max_size=40).map(
    lambda raw: bytes(b"{}ab"[byte % 4] if byte % 3 == 0 else byte for byte in raw)
)


@given(st.one_of(st.binary(max_size=300), braces_and_letters))
def test_matches_reference(key: bytes) -> None:
    assert key_slot(key) == reference_slot(key)
