"""PTG data store engine: live sensor data over WebSocket and REST, stored in Redis Streams.

Embedding: ``engine.server.run(engine.config.Config(...))`` serves until SIGINT/SIGTERM.
"""

__version__ = "0.1.0"
