# One log line per WebSocket the engine closes with a code of 1002 or more:
# what an operator needs to find the client (peer) and what it was doing
# (stream, reason). Closes are rare; the line is built only then.
#
# Uses: common.pxi

_close_log = logging.getLogger("engine.ws")


cdef int log_close(str kind, int code, object reason, WSTransport transport, object streams) except -1:
    """``kind`` is "push" or "pull"; ``streams`` the path's stream keys (bytes)."""
    if code < CLOSE_PROTOCOL_ERROR:
        return 0
    peer = transport.underlying_transport.get_extra_info("peername") if transport is not None else None
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else reason
    names = "+".join(key.decode("utf-8", "replace") for key in streams) or "*"
    level = logging.WARNING if code == CLOSE_INTERNAL_ERROR else logging.INFO
    _close_log.log(level, "%s socket of %s on %s closed %d: %s", kind,
                   f"{peer[0]}:{peer[1]}" if peer else "?", names, code, text)
    return 0
