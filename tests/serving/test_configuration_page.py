"""The manual's configuration page is generated from the settings class and the
Makefile: it must be current, and every variable must say what it does."""

from __future__ import annotations

import re

from loan_preprocessing.serving.configuration_page import (
    configuration_page,
    make_variables,
    service_variables,
)
from loan_preprocessing.serving.settings import ServiceSettings
from tests.support.server import ROOT

MAKEFILE = ROOT / "Makefile"
PAGE = ROOT / "docs" / "configuration.md"
REGENERATE = "python -m loan_preprocessing.serving.configuration_page > docs/configuration.md"


def test_the_page_is_current():
    assert PAGE.read_text() == configuration_page(MAKEFILE), f"stale: run `{REGENERATE}`"


def test_every_setting_is_on_the_page_with_a_meaning():
    variables = service_variables()
    assert {v.name for v in variables} == ServiceSettings.variable_names()
    assert [v.name for v in variables if not v.meaning] == [], "comment the field in settings.py"


def test_every_make_variable_is_on_the_page_with_a_meaning():
    makefile = MAKEFILE.read_text()
    assigned = set(re.findall(r"^(?:export\s+)?([A-Z][A-Z0-9_]*)\s*\?=", makefile, flags=re.M))
    variables = make_variables(makefile)
    assert {v.name for v in variables} == assigned
    assert {"PYTHON", "HOST", "PORT", "DATA", "LOG", "BENTOML_HOME"} <= assigned
    assert [v.name for v in variables if not v.meaning] == [], "add `# NAME: meaning` above it"


def test_a_meaning_that_says_version_in_brackets_is_escaped():
    assert "loan_approval:&lt;version&gt;" in PAGE.read_text()
