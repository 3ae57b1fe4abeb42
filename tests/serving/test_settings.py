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
