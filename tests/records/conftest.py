"""Fixtures of the decision-store tests."""

from __future__ import annotations

import pytest

from loan_preprocessing.records.store import DecisionStore


@pytest.fixture
def store(store_url):
    """A prepared DecisionStore on each store the tests run against (store_url)."""
    store = DecisionStore(store_url)
    store.prepare()
    yield store
    store.close()
