"""Settings: every missing or wrong value is named at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings

GOOD = {
    "WECHAT_TOKEN": "tok123",
    "WECHAT_APPID": "wx0001",
    "WECHAT_APPSECRET": "s",
    "WECHAT_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
}


def test_environment_gives_valid_settings() -> None:
    settings = load_settings(GOOD)
    assert (settings.token, settings.message_mode, settings.timezone) == (
        "tok123",
        "safe",
        "Asia/Shanghai",
    )
    assert settings.uses_redis_standin


def test_each_problem_is_named() -> None:
    env = {
        "WECHAT_MODE": "secret",
        "WECHAT_AES_KEY": "short",
        "HALL_TIMEZONE": "Mars/Base",
        "REPLY_BUDGET_S": "9",
        "DATABASE_URL": "mysql://x",
        "REDIS_URL": "http://x",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    text = str(caught.value)
    for name in (
        "WECHAT_TOKEN",
        "WECHAT_APPID",
        "WECHAT_APPSECRET",
        "WECHAT_MODE",
        "WECHAT_AES_KEY",
        "HALL_TIMEZONE",
        "REPLY_BUDGET_S",
        "DATABASE_URL",
        "REDIS_URL",
    ):
        assert name in text


def test_number_that_is_not_a_number_is_named() -> None:
    with pytest.raises(SettingsError, match="BOT_PORT must be a int"):
        load_settings({**GOOD, "BOT_PORT": "eighty"})


def test_file_is_overlaid_by_environment(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text(
        'token = "fromfile"\napp_id = "wxfile"\napp_secret = "x"\nmessage_mode = "plain"\n',
        encoding="utf-8",
    )
    settings = load_settings({"WECHAT_APPID": "wxenv"}, path)
    assert (settings.token, settings.app_id) == ("fromfile", "wxenv")


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text('tokn = "typo"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="unknown setting 'tokn'"):
        load_settings({}, path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({}, tmp_path / "nope.toml")


def test_masked_settings_hide_secrets() -> None:
    shown = load_settings(GOOD).masked()
    assert shown["token"] == "***" and shown["aes_key"] == "***" and shown["app_id"] == "wx0001"


def test_dev_config_is_valid() -> None:
    from bot.cli import DEV_CONFIG

    assert load_settings({}, DEV_CONFIG).message_mode == "safe"


def test_a_value_that_does_not_parse_hides_no_other_problem() -> None:
    """BOT_PORT=abc once was the only error named, hiding a missing token and a bad mode."""
    with pytest.raises(SettingsError) as caught:
        load_settings({"BOT_PORT": "abc", "WECHAT_MODE": "secure"})
    text = str(caught.value)
    assert "BOT_PORT" in text and "WECHAT_TOKEN" in text and "WECHAT_MODE" in text


def test_port_out_of_range_is_named() -> None:
    with pytest.raises(SettingsError, match="BOT_PORT must be 1-65535"):
        load_settings({**GOOD, "BOT_PORT": "99999"})


def test_staff_token_without_its_window_is_named() -> None:
    with pytest.raises(SettingsError, match="STAFF_TOKENS"):
        load_settings({**GOOD, "STAFF_TOKENS": "nocolon"})


def test_database_commands_need_no_wechat_secrets() -> None:
    settings = load_settings({"DATABASE_URL": "sqlite://x.db"}, needs_wechat=False)
    assert settings.database_url == "sqlite://x.db"
    with pytest.raises(SettingsError):
        load_settings({"DATABASE_URL": "sqlite://x.db"})


def test_worker_nice_is_checked_and_read() -> None:
    assert load_settings({**GOOD, "WORKER_NICE": "5"}).worker_nice == 5
    with pytest.raises(SettingsError, match="WORKER_NICE must be 0-19"):
        load_settings({**GOOD, "WORKER_NICE": "25"})


def test_db_create_on_a_database_that_does_not_exist_says_so_in_a_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed a 78-line traceback ending in DBConnectionError."""
    from bot import cli

    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:9/no_such_database")

    assert cli.main(["db", "create"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the database" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3
