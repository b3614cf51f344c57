"""YAML from users and clients: merge keys work, and merges that multiply are refused before
they cost minutes and gigabytes (PyYAML copies merged entries into each mapping)."""

from __future__ import annotations

import pytest
import yaml
from fastapi.testclient import TestClient

from burst.targets import BurstConfigError, burst_from_yaml
from quota.config import QuotaConfigError, config_from_yaml
from quota.store import Store
from scheduler.model.safe_yaml import MAX_MERGED_ENTRIES, load_yaml
from scheduler.placement.classes import ClassConfigError, classes_from_yaml
from slotwise.server.app import create_app
from tests.quota_fixtures import ACTOR

pytest_plugins = ["tests.quota_fixtures"]


def multiplying(levels: int, width: int = 6) -> str:
    """Each mapping merges the one before ``width`` times: ``width ** levels`` entries from a few
    hundred bytes (7 levels: 280,000 entries from 390 bytes)."""
    return "a0: &a0 {k: v}\n" + "".join(
        f"a{i}: &a{i}\n  <<: [{', '.join([f'*a{i - 1}'] * width)}]\n  k{i}: v\n" for i in range(1, levels + 1))


def test_ordinary_merge_keys_load_as_pyyaml_loads_them():
    text = """
defaults: &defaults {guaranteed: {cpu: "8"}, shareable: {cpu: "4"}}
pools:
- {<<: *defaults, name: nlp}
- <<: [*defaults, {max: {cpu: "16"}}]
  name: vision
"""
    assert load_yaml(text) == yaml.safe_load(text)
    assert load_yaml(text)["pools"][1] == {"guaranteed": {"cpu": "8"}, "shareable": {"cpu": "4"}, "max": {"cpu": "16"},
                                           "name": "vision"}


def test_merges_that_multiply_are_refused():
    assert 6 ** 7 > MAX_MERGED_ENTRIES
    with pytest.raises(yaml.YAMLError, match="merge keys .* expand to more than 100,000 entries"):
        load_yaml(multiplying(7))
    with pytest.raises(yaml.YAMLError, match="merge keys"):
        load_yaml(multiplying(12))  # 2 billion entries: refused as soon as the bound is passed


@pytest.mark.parametrize("read, error", [(config_from_yaml, QuotaConfigError), (burst_from_yaml, BurstConfigError),
                                         (classes_from_yaml, ClassConfigError)])
def test_every_configuration_reader_refuses_them(read, error):
    with pytest.raises(error, match="merge keys"):
        read(multiplying(12))


def test_the_quota_api_answers_400_and_changes_nothing(loaded: Store):
    admin = {"Authorization": f"Bearer {loaded.create_token('ops', 'admin', None, ACTOR)}"}
    before = loaded.config()
    reply = TestClient(create_app(loaded)).put("/quota/config", content=multiplying(12), headers=admin)
    assert reply.status_code == 400 and "merge keys" in reply.json()["detail"], reply.text
    assert loaded.config() == before
