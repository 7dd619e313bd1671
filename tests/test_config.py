"""Configuration: flags over PTG_* variables over defaults; clear errors; --help covers all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from engine.cli import build_parser
from engine.config import OPTIONS, ConfigError, resolve
from tests.conftest import ROOT


def config_from(argv: list[str], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return resolve(vars(build_parser().parse_args(["serve", *argv])), env or {})


def test_defaults() -> None:
    config = config_from([])
    assert (config.host, config.port, config.auth, config.max_len) == ("127.0.0.1", 7890, "dev", 1000)
    assert config.max_message_size == 64 * 1024 * 1024
    assert config.redis_url is None
    assert config.data_dir == Path("./data").resolve()
    assert not config.tls


def test_every_option_reads_its_variable_and_the_flag_wins() -> None:
    env = {
        "PTG_PORT": "9000",
        "PTG_MAX_LEN": "50",
        "PTG_AUTH": "production",
        "PTG_DATA_DIR": "/tmp/x",
        "PTG_LOG_LEVEL": "DEBUG",
    }
    config = config_from([], env)
    assert (config.port, config.max_len, config.auth, config.log_level) == (9000, 50, "production", "debug")
    assert config.data_dir == Path("/tmp/x")
    assert config_from(["--port", "9100"], env).port == 9100


def test_plain_redis_url_is_read_as_the_original_did() -> None:
    assert config_from([], {"REDIS_URL": "redis://h:1/0"}).redis_url == "redis://h:1/0"
    both = {"REDIS_URL": "redis://h:1/0", "PTG_REDIS_URL": "redis://p:2/0"}
    assert config_from([], both).redis_url == "redis://p:2/0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port: port must be within"),
        (["--port", "x"], "--port"),
        (["--auth", "open"], "--auth: auth must be 'dev' or 'production'"),
        (["--max-len", "0"], "--max-len: must be a positive integer"),
        (["--log-level", "loud"], "unknown log level"),
        (["--ssl-certfile", "c.pem"], "must be given together"),
        (["--redis-url", "redis://a,,redis://b"], "--redis-url: Redis URL 1 of 2 ends with a comma"),
        (["--redis-url", ",redis://a"], "--redis-url: Redis URL 1 of 2 is empty"),
        (["--redis-url", "redis://a:1,redis://b:x"], r"--redis-url: URL 2 \(redis://b:x\): Port could not"),
        (["--redis-url", "redis://h1:6379,h2:6379"], "a comma in the host; several seeds are written"),
        (["--redis-url", "http://a"], "must specify one of the following schemes"),
        (["--redis-cluster"], "--redis-cluster needs --redis-url"),
    ],
)
def test_bad_values_are_clear_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from(argv)


def test_redis_url_takes_the_seeds_of_one_cluster_and_redis_cluster_is_a_switch(tmp_path: Path) -> None:
    seeds = "redis://a:1,rediss://b:2/0?ssl_cert_reqs=none"
    config = config_from(["--redis-url", seeds])
    assert (config.redis_url, config.redis_cluster) == (seeds, False)
    env = {"PTG_REDIS_URL": seeds, "PTG_REDIS_CLUSTER": "yes"}
    assert config_from([], env).redis_cluster
    assert not config_from(["--no-redis-cluster"], env).redis_cluster
    file = tmp_path / "engine.toml"
    file.write_text(f'redis-url = "{seeds}"\nredis-cluster = true\n')
    config = resolve({}, {}, file)
    assert (config.redis_url, config.redis_cluster) == (seeds, True)
    # An empty flag still means the embedded Redis.
    assert config_from(["--redis-url", ""]).redis_url == ""


def test_a_bad_seed_list_shows_no_password() -> None:
    with pytest.raises(ConfigError, match="Port could not") as error:
        config_from(["--redis-url", "redis://u:hunter2@a:1,redis://u:hunter2@b:x"])
    assert "hunter2" not in str(error.value)


def test_bad_variable_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="PTG_WORKERS"):
        config_from([], {"PTG_WORKERS": "-1"})


def test_help_explains_every_option_and_its_variable() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    flat = " ".join(out.split())
    for option in OPTIONS:
        assert option.flag in flat
        assert option.env in flat


def test_cli_reports_a_bad_value_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine", "--port", "99999"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --port: port must be within 0..65535, not '99999'"


def test_cli_reports_a_bad_seed_list_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine", "--redis-url", "redis://a,,redis://b"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --redis-url: Redis URL 1 of 2 ends with a comma, and no URL follows it"
    )


def test_a_config_file_sets_options_under_variables_and_flags(tmp_path: Path) -> None:
    file = tmp_path / "engine.toml"
    file.write_text('max-len = 5000\nauth = "production"\naccess_log = false\nport = 8000\n')
    config = resolve(vars(build_parser().parse_args(["serve", "--config", str(file)])), {}, file)
    assert (config.max_len, config.auth, config.access_log, config.port) == (5000, "production", False, 8000)
    # A variable wins over the file, a flag over both.
    argv = ["serve", "--port", "8001"]
    config = resolve(vars(build_parser().parse_args(argv)), {"PTG_MAX_LEN": "7", "PTG_CONFIG": str(file)})
    assert (config.max_len, config.port, config.auth) == (7, 8001, "production")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max-len = 5000\nmax-lenn = 3\n", "unknown option 'max-lenn'"),
        ("port = 99999\n", "engine.toml: port: port must be within"),
        ("port = \n", "engine.toml"),
    ],
)
def test_a_bad_config_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "engine.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        resolve({}, {}, file)


def test_commands_read_the_config_file(tmp_path: Path) -> None:
    file = tmp_path / "engine.toml"
    file.write_text(
        f'secret = "a-secret-from-the-config-file-32-bytes-or-more"\ndata-dir = "{tmp_path / "data"}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "engine", "token", "--user", "script", "--config", str(file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (
        jwt.decode(
            result.stdout.strip(), "a-secret-from-the-config-file-32-bytes-or-more", algorithms=["HS256"]
        )["sub"]
        == "script"
    )


def test_each_command_lists_only_its_options() -> None:
    def help_of(command: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "engine", command, "--help"], cwd=ROOT, capture_output=True, text=True
        ).stdout

    assert "--max-len" in help_of("serve") and "{dev,production}" in help_of("serve")
    assert "--max-len" not in help_of("token") and "--secret" in help_of("token")
    assert "--secret" not in help_of("adduser") and "--data-dir" in help_of("adduser")
    version = subprocess.run(
        [sys.executable, "-m", "engine", "--version"], cwd=ROOT, capture_output=True, text=True
    )
    assert version.stdout.startswith("ptg-engine ")
