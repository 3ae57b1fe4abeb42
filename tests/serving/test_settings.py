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
    assert ServiceSettings.from_env({"LOAN_PREDICTION_LOG": ""}).prediction_log is None


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
