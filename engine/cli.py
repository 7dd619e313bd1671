"""``python -m engine [serve|token|adduser]``: every option also reads a PTG_* variable."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

from engine import __version__
from engine.auth import TokenSigner, load_or_create_secret
from engine.config import ConfigError, add_arguments, resolve
from engine.redis.embedded import EmbeddedRedisError
from engine.tls import SelfSignedError
from engine.users import UsersFile

COMMANDS = ("serve", "token", "adduser")


def options_of(names: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """A parent parser with the flags of the options ``names`` (all: None), and --config."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--config",
        metavar="FILE",
        help='a TOML file of options (max-len = 5000, auth = "production", ...); '
        "flags and PTG_* variables win over it [env PTG_CONFIG]",
    )
    add_arguments(parent, names)
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="PTG data store engine: live sensor data over WebSocket and REST, "
        "stored in Redis Streams. Without a command, serves.",
    )
    parser.add_argument("--version", action="version", version=f"ptg-engine {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", parents=[options_of()], help="serve HTTP and WebSockets (default)")
    token = commands.add_parser(
        "token",
        parents=[options_of(("data_dir", "secret", "token_lifetime"))],
        help="print a signed token for scripts",
    )
    token.add_argument("--user", required=True, help="user name to put in the token")
    token.add_argument("--days", type=float, default=30.0, help="lifetime in days (default 30)")
    adduser = commands.add_parser(
        "adduser", parents=[options_of(("data_dir",))], help="add or update a user of production mode"
    )
    adduser.add_argument("name", help="user name")
    adduser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "serve")
    args = build_parser().parse_args(args_list)
    try:
        config = resolve(vars(args), config_file=args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "token":
        if args.days <= 0:
            print("error: --days must be positive", file=sys.stderr)
            return 2
        secret = config.secret or load_or_create_secret(config.data_dir)
        token, _ = TokenSigner(secret, config.token_lifetime).issue(args.user, int(args.days * 86400))
        print(token)
        return 0
    if args.command == "adduser":
        return _add_user(UsersFile(config.data_dir), args.name, args.password_stdin)
    from engine.server import run

    try:
        run(config)
    except (EmbeddedRedisError, SelfSignedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _add_user(users: UsersFile, name: str, from_stdin: bool) -> int:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if password != getpass.getpass("again: "):
            print("error: the passwords differ", file=sys.stderr)
            return 2
    try:
        users.add(name, password)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"user {name!r} saved in {users.path}")
    return 0
