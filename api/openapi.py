"""The engine's REST API in OpenAPI 3.0 (what the bundled Swagger UI renders),
written out: the wire contract is fixed."""

from __future__ import annotations

from typing import Any

from engine import __version__

_SID = {
    "name": "sid",
    "in": "path",
    "required": True,
    "description": "stream id; several joined by '+' where noted",
    "schema": {"type": "string"},
}
_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_JSON: dict[str, Any] = {"content": {"application/json": {"schema": {}}}}


def _query(name: str, kind: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind},
    }


def _op(summary: str, params: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {"200": {"description": "OK", **_JSON}, "400": _ERROR, "401": _ERROR},
    }
    operation.update(extra)
    return operation


# The WebSocket endpoints, which OpenAPI cannot describe as operations; the
# full text is docs/protocol.md in the engine's source.
_WEBSOCKETS = """Live sensor data in Redis Streams. Log in with **Authorize** (dev mode: any
name with the same name as password). The full protocol is `docs/protocol.md`
in the engine's source.

### WebSocket push: `ws://HOST:PORT/data/{sid}/push`
Query: `batch` (false; forced for `*` and `a+b`), `ack` (false), `offsets`
(`auto`, `start`, `end`), `durability` (`memory`, `fsync`, `replicas:N`,
`fsync+replicas:N`), `token`.
Single mode: each binary message is one entry. Batch mode: a text header, a
JSON list with one item per entry (`OFFSET`, `[SID, OFFSET]` or
`[SID, TS, OFFSET]`), then one binary message with the entries' bytes. With
`ack=true` each message is answered with its entry ids, comma-separated, once
Redis stored them. Closes: 1007 bad header, 1008 stream not allowed, 1009
message too large, 1011 Redis unreachable or refused an entry.

### WebSocket pull: `ws://HOST:PORT/data/{sid}/pull`
Query: `count` (1), `last_entry_id` (`$`; one per stream joined by `+`),
`latest` (true for `$` and `*`), `timeout` (ms), `onebyone`, `ack`,
`time_sync_id`, `rate_limit` (s), `max_fps`, `header` (0: binary messages
only, one entry each), `token`. Each step is a text message
`[[sid, entry_id, start_offset], ...]` and one binary message with the
entries' bytes.
"""

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "PTG data store engine",
        "version": __version__,
        "description": _WEBSOCKETS,
    },
    "components": {
        "schemas": {
            "Error": {"type": "object", "properties": {"detail": {}}, "required": ["detail"]},
        },
        "securitySchemes": {
            "OAuth2": {"type": "oauth2", "flows": {"password": {"tokenUrl": "/token", "scopes": {}}}},
        },
    },
    "security": [{"OAuth2": []}],
    "paths": {
        "/token": {
            "post": _op(
                "Log in and get a bearer token (also set as a cookie)",
                [_query("exp", "integer", "lifetime in seconds, capped by the server")],
                security=[],
                requestBody={
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "username": {"type": "string"},
                                    "password": {"type": "string"},
                                },
                                "required": ["username", "password"],
                            }
                        }
                    },
                },
            )
        },
        "/ping": {"get": _op("true while Redis answers (503 and false when it does not)", security=[])},
        "/health": {
            "get": _op(
                "The engine's version and uptime, its Redis (server, version, reachable, the "
                "cluster's state when it is one) and this process's open sockets; 503 while "
                "Redis does not answer",
                security=[],
            )
        },
        "/streams/": {
            "get": _op(
                "Sorted stream ids, or info objects", [_query("info", "boolean", "return info objects")]
            )
        },
        "/data/{sid}": {
            "post": _op(
                "Store every file part as one entry; returns the new entry ids in order. "
                "With sid '*' (or 'a+b'), each part's filename, else its field name, names its stream",
                [_SID],
                requestBody={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": {"type": "string", "format": "binary"},
                            }
                        }
                    },
                },
            ),
            "get": _op(
                "Read entries of one or more streams ('a+b'), concatenated",
                [
                    _SID,
                    _query("count", "integer", "entries per stream, at least 1 (default 1)"),
                    _query(
                        "last_entry_id",
                        "string",
                        "'*' (default): the latest `count` entries, oldest first; an entry id "
                        "'<ms>-<seq>', '0' or '$': up to `count` entries after it ('$': none). "
                        "One value for all streams, or one per stream joined by '+'",
                    ),
                ],
                responses={
                    "200": {
                        "description": "the entries' bytes, back to back",
                        "headers": {
                            "entry-offset": {
                                "description": "JSON list [[sid, entry_id, start_offset], ...] in "
                                "ASCII (non-ASCII escaped as \\uXXXX); start offsets into the body",
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    "400": _ERROR,
                    "401": _ERROR,
                    "503": _ERROR,
                },
            ),
        },
        "/streams/{sid}": {
            "get": _op(
                "Stream info: sid, meta, XINFO STREAM fields",
                [_SID, _query("report_error", "boolean", "400 when the stream is missing")],
            ),
            "put": _op(
                "Merge (or with override replace) the stream's metadata",
                [_SID, _query("override", "boolean", "replace instead of merge")],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            ),
            "delete": _op("Delete stream(s) ('a+b') and their metadata", [_SID]),
        },
    },
}
