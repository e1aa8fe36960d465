"""Settings: each bad value stops the CLI with exit code 2 and one line naming the variable, never a secret."""

from __future__ import annotations

import pytest

from app.cli import main
from app.settings import ENV_PREFIX, load_settings

SECRET = "hunter2-" + "s" * 16  # a value that must never be printed back
GOOD_TOKEN = "t" * 32


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a case sets: the session may run with ALERT_HISTORY_* variables of its own."""
    import os

    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("DATABASE_URL", f"mysql://history:{SECRET}@db:3306/h", "must start with postgres:// or postgresql://"),
        ("DATABASE_URL", f"postgresql://history:{SECRET}@db:notaport/h", "is not a valid URL"),
        ("DATABASE_URL", f"postgresql://history:{SECRET}@db:99999/h", "is not a valid URL"),
        ("REDIS_URL", f"http://:{SECRET}@redis:6379/0", "must start with redis:// or rediss://"),
        ("API_TOKEN", SECRET[:15], "at least 16 characters"),
        ("API_TOKEN", SECRET + " with spaces", "printable ASCII without spaces"),
        ("READ_TOKEN", SECRET + "é", "printable ASCII without spaces"),
        ("WEBHOOK_SECRET", "short-" + SECRET[:5], "at least 16 characters"),
        ("PARTITIONS", "many", "valid integer"),
        ("LOG_FORMAT", "xml", "should match pattern"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it_and_no_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, says: str
) -> None:
    # Every secret setting is set (and valid) beside the bad one: none of them may show either.
    monkeypatch.setenv(f"{ENV_PREFIX}LLM_API_KEY", SECRET)
    monkeypatch.setenv(f"{ENV_PREFIX}API_TOKEN", GOOD_TOKEN + "api")
    monkeypatch.setenv(f"{ENV_PREFIX}READ_TOKEN", GOOD_TOKEN + "read")
    monkeypatch.setenv(f"{ENV_PREFIX}{variable}", value)
    with pytest.raises(SystemExit) as exit_:
        main(["migrate"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"alert-history: bad setting: {ENV_PREFIX}{variable}: "), err
    assert says in err
    for secret in (SECRET, SECRET[:15], SECRET[:5], GOOD_TOKEN):
        assert secret not in err


def test_a_bad_url_is_shown_with_its_password_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}DATABASE_URL", f"mysql://history:{SECRET}@db:3306/h")
    with pytest.raises(SystemExit):
        main(["worker"])
    assert "(got 'mysql://history:***@db:3306/h')" in capsys.readouterr().err


def test_secrets_are_secret_str_and_urls_stay_out_of_repr() -> None:
    settings = load_settings(
        api_token=GOOD_TOKEN,
        read_token=GOOD_TOKEN + "r",
        webhook_secret=GOOD_TOKEN + "w",
        llm_api_key=SECRET,
        database_url=f"postgresql://history:{SECRET}@db/h",
        redis_url=f"redis://:{SECRET}@redis:6379/0",
    )
    assert settings.api_token is not None and settings.api_token.get_secret_value() == GOOD_TOKEN
    assert settings.llm_api_key is not None and settings.llm_api_key.get_secret_value() == SECRET
    shown = repr(settings) + str(settings)
    assert GOOD_TOKEN not in shown and SECRET not in shown


def test_empty_secrets_are_unset_and_a_multi_host_postgres_url_is_left_to_the_driver() -> None:
    settings = load_settings(api_token="", read_token="  ", webhook_secret="", llm_api_key="")
    assert (settings.api_token, settings.read_token, settings.webhook_secret, settings.llm_api_key) == (None,) * 4
    url = "postgresql://history@db1:5432,db2:5432/h?target_session_attrs=read-write"
    assert load_settings(database_url=url).database_url == url
