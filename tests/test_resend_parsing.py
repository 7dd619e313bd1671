"""What the cluster resend path reads from bytes it kept: where each framed
command starts and ends, a command's key, a redirect's target. Framed by the
real RespWriter; hostile bytes give ValueError and nothing else."""

from __future__ import annotations

import itertools

import pytest
from hiredis import ReplyError
from hypothesis import given
from hypothesis import strategies as st

from engine._core import RespWriter, resp_command_bounds
from engine.redis.resend import command_key, redirect_target

keys = st.binary(min_size=1, max_size=40)
payloads = st.binary(max_size=300)
xadds = st.tuples(keys, st.sampled_from([b"*", b"1-1", b"123-*"]), payloads, st.integers(0, 10**9))
others = st.lists(st.one_of(st.binary(max_size=30), st.integers(-(10**6), 10**6)), min_size=1, max_size=6)


def framed_alone(command: tuple[str, object]) -> bytes:
    writer = RespWriter(by_reference_threshold=64)
    kind, arguments = command
    if kind == "xadd":
        writer.xadd(*arguments)  # type: ignore[misc]
    else:
        writer.command(*arguments)  # type: ignore[misc]
    return b"".join(bytes(chunk) for chunk in writer.take())


commands = st.one_of(st.tuples(st.just("xadd"), xadds), st.tuples(st.just("command"), others))


@given(st.lists(commands, min_size=1, max_size=20))
def test_bounds_cut_a_flush_into_its_commands(framed_commands: list[tuple[str, object]]) -> None:
    alone = [framed_alone(command) for command in framed_commands]
    together = b"".join(alone)
    bounds = resp_command_bounds(together)
    assert len(bounds) == len(alone) + 1
    assert [together[a:b] for a, b in itertools.pairwise(bounds)] == alone


@given(xadds)
def test_the_key_of_an_xadd_is_read_back(xadd: tuple[bytes, bytes, bytes, int]) -> None:
    assert command_key(framed_alone(("xadd", xadd))) == xadd[0]


@given(st.lists(commands, min_size=1, max_size=5), st.data())
def test_cut_or_damaged_framing_is_a_value_error(
    framed_commands: list[tuple[str, object]], data: st.DataObject
) -> None:
    framed = bytearray(b"".join(framed_alone(command) for command in framed_commands))
    if data.draw(st.booleans()):
        del framed[data.draw(st.integers(1, len(framed) - 1)) :]
    else:
        position = data.draw(st.integers(0, len(framed) - 1))
        framed[position] ^= data.draw(st.integers(1, 255))
    try:
        bounds = resp_command_bounds(bytes(framed))
    except ValueError:
        return
    # A flip inside a payload leaves valid framing: the cuts still cover it all.
    assert bounds[0] == 0 and bounds[-1] == len(framed)


@given(st.binary(max_size=200))
def test_any_bytes_give_bounds_or_a_value_error(framed: bytes) -> None:
    try:
        bounds = resp_command_bounds(framed)
    except ValueError:
        return
    assert bounds == sorted(bounds) and bounds[-1] == len(framed)


def test_the_errors_say_where() -> None:
    with pytest.raises(ValueError, match="expected '\\*' at byte 0"):
        resp_command_bounds(b"$3\r\nabc\r\n")
    with pytest.raises(ValueError, match="cut short"):
        resp_command_bounds(b"*1\r\n$10\r\nabc\r\n")
    with pytest.raises(ValueError, match="malformed length at byte 2"):
        resp_command_bounds(b"*1x\r\n")


def test_redirect_targets() -> None:
    assert redirect_target(ReplyError("MOVED 3999 127.0.0.1:6381")) == ("MOVED", "127.0.0.1", 6381)
    assert redirect_target(ReplyError("ASK 3999 ::1:7000")) == ("ASK", "::1", 7000)
    assert redirect_target(ReplyError("TRYAGAIN Multiple keys request during rehashing of slot")) is None
    assert redirect_target(ReplyError("CLUSTERDOWN Hash slot not served")) is None
