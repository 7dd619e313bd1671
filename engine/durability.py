"""When an ack may be sent: once Redis replied (memory), once its append-only file
is on disk (fsync), once N replicas have the entries (replicas:N), or both."""

from __future__ import annotations

from dataclasses import dataclass

from engine.redis.servers import ServerVersion


@dataclass(frozen=True)
class Durability:
    fsync: bool = False
    replicas: int = 0

    @classmethod
    def parse(cls, text: str) -> Durability:
        """``memory``, ``fsync``, ``replicas:N`` or ``fsync+replicas:N``."""
        fsync, replicas = False, 0
        for part in text.split("+"):
            if part == "memory" and text == "memory":
                continue
            if part == "fsync" and not fsync:
                fsync = True
            elif part.startswith("replicas:") and part[9:].isascii() and part[9:].isdigit() and not replicas:
                replicas = int(part[9:])
                if not 1 <= replicas <= 64:
                    raise ValueError(f"replicas:N takes N from 1 to 64, not {replicas}")
            else:
                raise ValueError(
                    f"durability must be 'memory', 'fsync', 'replicas:N' or 'fsync+replicas:N', not {text!r}"
                )
        return cls(fsync, replicas)

    def __str__(self) -> str:
        parts = (["fsync"] if self.fsync else []) + ([f"replicas:{self.replicas}"] if self.replicas else [])
        return "+".join(parts) or "memory"

    def refusal(self, server: ServerVersion, aof_enabled: bool) -> str | None:
        """Why this Redis cannot give it, or None."""
        if self.fsync and server.version < (7, 2, 0):
            return f"durability={self} needs WAITAOF (Redis 7.2 or Valkey); this is {server}"
        if self.fsync and not aof_enabled:
            return f"durability={self} needs Redis' append-only file (appendonly yes)"
        return None
