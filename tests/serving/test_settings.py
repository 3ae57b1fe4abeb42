"""LOAN_* settings: parsed with types, one clear line naming a bad variable."""

from __future__ import annotations

import pytest

from loan_preprocessing.serving.settings import ServiceSettings, SettingsError


def test_defaults_without_variables():
    settings = ServiceSettings.from_env({})
    assert settings.workers == 2
    assert settings.api_key is None
    assert settings.access_log is False


def test_variables_are_typed():
    settings = ServiceSettings.from_env(
        {"LOAN_MAX_BODY_BYTES": "1000", "LOAN_ACCESS_LOG": "yes", "LOAN_TIMEOUT_SECONDS": "2.5"}
    )
    assert (settings.max_body_bytes, settings.access_log, settings.timeout_seconds) == (
        1000,
        True,
        2.5,
    )


def test_an_empty_variable_counts_as_unset():
    assert ServiceSettings.from_env({"LOAN_DECISION_STORE_URL": ""}).decision_store_url is None


def test_the_process_environment_is_read(monkeypatch):
    monkeypatch.setenv("LOAN_WORKERS", "3")
    assert ServiceSettings.from_env().workers == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOAN_MAX_BODY_BYTES", "abc"),
        ("LOAN_WORKERS", "0"),
        ("LOAN_TIMEOUT_SECONDS", "-1"),
        ("LOAN_ACCESS_LOG", "maybe"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name, value):
    with pytest.raises(SettingsError) as error:
        ServiceSettings.from_env({name: value})
    message = str(error.value)
    assert message.startswith(f"{name}={value!r}: ")
    assert "\n" not in message


@pytest.mark.parametrize("given", ["k3y\n", "  k3y ", "\tk3y\r\n"])
def test_the_api_key_loses_surrounding_whitespace(given):
    assert ServiceSettings.from_env({"LOAN_API_KEY": given}).api_key == "k3y"


def test_a_blank_api_key_is_refused_without_showing_it():
    with pytest.raises(SettingsError) as error:
        ServiceSettings.from_env({"LOAN_API_KEY": " \n"})
    assert str(error.value).startswith("LOAN_API_KEY=<hidden>: ")


def test_from_env_or_exit_exits_with_the_one_line(monkeypatch):
    monkeypatch.setenv("LOAN_BODY_IDLE_SECONDS", "soon")
    with pytest.raises(SystemExit) as stop:
        ServiceSettings.from_env_or_exit()
    assert str(stop.value).startswith("error: LOAN_BODY_IDLE_SECONDS='soon': ")


def test_the_decision_store_url_is_read_from_a_file_and_never_shown(tmp_path):
    url_file = tmp_path / "url"
    url_file.write_text("postgresql://u:pw@db/records\n")
    settings = ServiceSettings.from_env({"LOAN_DECISION_STORE_URL_FILE": str(url_file)})
    assert settings.store_url == "postgresql://u:pw@db/records"
    with pytest.raises(ValueError, match="not both"):
        ServiceSettings.from_env(
            {"LOAN_DECISION_STORE_URL_FILE": str(url_file), "LOAN_DECISION_STORE_URL": "x"}
        )
    with pytest.raises(ValueError, match="cannot read it"):
        ServiceSettings.from_env({"LOAN_DECISION_STORE_URL_FILE": str(tmp_path / "absent")})


def test_records_are_on_by_default_and_off_only_when_said(monkeypatch, tmp_path):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    assert ServiceSettings.from_env({}).store_url == f"sqlite:///{tmp_path}/decisions.sqlite3"
    assert ServiceSettings.from_env({"LOAN_DECISION_RECORDS": "false"}).store_url is None
    assert ServiceSettings.from_env({}).retention_months == 25
