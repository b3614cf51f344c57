"""The quota configuration: what compiles, what round-trips, and what is refused with which words."""

from __future__ import annotations


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quota.config import (
    Pool,
    QuotaConfig,
    QuotaConfigError,
    ReclaimSettings,
    compile_document,
    config_from_yaml,
    children_by_parent,
    config_to_yaml,
    guarantees,
    parse_document,
    parse_duration,
    read_config,
)

GiB = 2**30

VALID = """
reclaim: {grace: 2m, min_loan: 1h}
pools:
- name: ai
  max: {nvidia.com/gpu: 40}
  budget: {per_day: 100}
  pools:
  - name: nlp
    description: language models
    guaranteed: {nvidia.com/gpu: 12, nvidia.com/gpu/A100-SXM4-80GB: 8, cpu: "64", memory: 512Gi}
    shareable: {nvidia.com/gpu: 8}
    max: {nvidia.com/gpu: 16}
    borrow_limit: {cpu: 500m}
  - name: vision
    weight: 2
    guaranteed: {nvidia.com/gpu: "10", nvidia.com/mig-1g.10gb: 3, example.com/fpga: 1}
    shareable: {nvidia.com/gpu: 2.5}
- name: spare
  public: true
  guaranteed: {nvidia.com/gpu: 500m, hugepages-2Mi: 1Gi}
"""


def test_valid_yaml_compiles_to_base_units_parents_first():
    config = config_from_yaml(VALID)
    assert [(p.name, p.parent) for p in config.pools] == [("ai", None), ("nlp", "ai"), ("vision", "ai"), ("spare", None)]
    assert config.reclaim == ReclaimSettings(grace_s=120.0, min_loan_s=3600.0)
    nlp = config.pool("nlp")
    assert nlp.guaranteed == {"nvidia.com/gpu": 12_000, "nvidia.com/gpu/A100-SXM4-80GB": 8_000, "cpu": 64_000,
                              "memory": 512 * GiB}
    assert (nlp.shareable, nlp.max, nlp.borrow_limit) == ({"nvidia.com/gpu": 8_000}, {"nvidia.com/gpu": 16_000},
                                                         {"cpu": 500})
    vision = config.pool("vision")
    assert vision.weight == 2.0
    assert vision.shareable == {"nvidia.com/gpu": 2_500}
    assert vision.guaranteed["nvidia.com/mig-1g.10gb"] == 3 and vision.guaranteed["example.com/fpga"] == 1
    assert config.pool("spare").public and config.pool("spare").guaranteed["nvidia.com/gpu"] == 500
    assert config.pool("ai").guaranteed == {}  # as written; the sum of the children is derived
    assert config.pool("ai").budget.per_day == 100
    assert [p.name for p in config.children("ai")] == ["nlp", "vision"]
    assert [p.name for p in config.children(None)] == ["ai", "spare"]


def test_empty_document_is_an_empty_configuration():
    assert config_from_yaml("") == QuotaConfig()
    assert config_from_yaml("pools: []") == QuotaConfig()


@pytest.mark.parametrize("text", [VALID, "pools: [{name: solo}]", "reclaim: {grace: 0, min_loan: 90}\npools: []"])
def test_export_then_import_is_a_no_op(text):
    config = config_from_yaml(text)
    exported = config_to_yaml(config)
    assert config_from_yaml(exported) == config
    assert config_to_yaml(config_from_yaml(exported)) == exported  # the text is stable too


def test_export_writes_amounts_canonically():
    exported = config_to_yaml(config_from_yaml(VALID))
    assert "nvidia.com/gpu: '12'" in exported  # 12000 milli-GPU is written as 12 GPUs
    assert "nvidia.com/gpu: 500m" in exported
    assert "memory: 512Gi" in exported
    assert "min_loan: 1h" in exported


def test_parent_without_guarantee_guarantees_its_childrens_sum():
    config = config_from_yaml("""
pools:
- name: org
  guaranteed: {cpu: 100}            # cpu given; gpu left to the children
  pools:
  - name: team
    pools:
    - {name: a, guaranteed: {nvidia.com/gpu: 2, cpu: 10}}
    - {name: b, guaranteed: {nvidia.com/gpu: 3}}
  - {name: c, guaranteed: {nvidia.com/gpu: 1, memory: 1Gi}}
""")
    by_name = {p.name: p for p in config.pools}
    guarantee = guarantees(children_by_parent(config.pools))
    assert guarantee(by_name["team"]) == {"nvidia.com/gpu": 5_000, "cpu": 10_000}
    assert guarantee(by_name["org"]) == {"cpu": 100_000, "nvidia.com/gpu": 6_000, "memory": GiB}
    assert guarantee(by_name["b"]) == {"nvidia.com/gpu": 3_000}


def test_derived_guarantee_counts_for_shareable():
    # team's GPU guarantee is its children's 5; lending 5 of it is allowed, 6 is not
    base = "pools:\n- name: team\n  shareable: {{nvidia.com/gpu: {}}}\n  pools: [{{name: a, guaranteed: {{nvidia.com/gpu: 5}}}}]"
    assert config_from_yaml(base.format(5)).pool("team").shareable == {"nvidia.com/gpu": 5_000}
    with pytest.raises(QuotaConfigError, match=r"pool team: shareable nvidia.com/gpu \(6\) is above guaranteed \(5\)"):
        config_from_yaml(base.format(6))


def problems_of(text: str) -> list[str]:
    with pytest.raises(QuotaConfigError) as info:
        config_from_yaml(text)
    assert str(info.value).startswith("invalid quota configuration: ")
    return info.value.problems


# (the document, words the single problem must contain)
INVALID = {
    "guaranteed above max": (
        "pools: [{name: nlp, guaranteed: {nvidia.com/gpu: 12}, max: {nvidia.com/gpu: 8}}]",
        ["pool nlp", "guaranteed nvidia.com/gpu (12) is above max (8)"],
    ),
    "children above parent": (
        "pools: [{name: ai, guaranteed: {cpu: 10}, pools: [{name: a, guaranteed: {cpu: 6}}, "
        "{name: b, guaranteed: {cpu: 5}}]}]",
        ["pool ai", "guaranteed cpu (10) is below its child pools' guarantees (11: a, b)"],
    ),
    "grandchildren above parent through a derived guarantee": (
        "pools: [{name: ai, guaranteed: {cpu: 3}, pools: [{name: mid, pools: [{name: leaf, guaranteed: {cpu: 4}}]}]}]",
        ["pool ai", "guaranteed cpu (3) is below its child pools' guarantees (4: mid)"],
    ),
    "unknown resource gpu": (
        "pools: [{name: nlp, guaranteed: {gpu: 1}}]",
        ["pool nlp", "guaranteed", "unknown resource 'gpu'"],
    ),
    "unknown resource cpus": (
        "pools: [{name: nlp, max: {cpus: 1}}]",
        ["pool nlp", "max", "unknown resource 'cpus'"],
    ),
    "GPU quota under a nested model path": (
        "pools: [{name: nlp, guaranteed: {nvidia.com/gpu/A100/80GB: 1}}]",
        ["pool nlp", "guaranteed", "unknown resource 'nvidia.com/gpu/A100/80GB'"],
    ),
    "negative value": (
        "pools: [{name: nlp, borrow_limit: {memory: -1Gi}}]",
        ["pool nlp", "borrow_limit", "memory: must not be negative"],
    ),
    "not a quantity": (
        "pools: [{name: nlp, shareable: {cpu: lots}}]",
        ["pool nlp", "shareable", "cpu: invalid quantity 'lots'"],
    ),
    "fractional pods": (
        "pools: [{name: nlp, guaranteed: {pods: 1.5}}]",
        ["pool nlp", "guaranteed", "pods: must be a whole number"],
    ),
    "duplicate name among siblings": (
        "pools: [{name: nlp}, {name: nlp}]",
        ["pool nlp", "the name is used twice"],
    ),
    "duplicate name in another branch": (
        "pools: [{name: a, pools: [{name: x}]}, {name: b, pools: [{name: x}]}]",
        ["pool x", "the name is used twice"],
    ),
    "bad pool name": (
        "pools: [{name: ai, pools: [{name: NLP_team}]}]",
        ["pool NLP_team: name: a pool name is lower-case", "'NLP_team'"],
    ),
    "pool name too long": (
        f"pools: [{{name: {'a' * 64}}}]",
        [f"pool {'a' * 64}: name:", "at most 63"],
    ),
    "unknown pool field": (
        "pools: [{name: ai, pools: [{name: nlp, guarenteed: {cpu: 1}}]}]",
        ["pool nlp: unknown field 'guarenteed'"],
    ),
    "unknown top-level field": (
        "pool: []",
        ["unknown field 'pool'"],
    ),
    "zero weight": (
        "pools: [{name: nlp, weight: 0}]",
        ["pool nlp: weight: Input should be greater than 0"],
    ),
    "public pool with children": (
        "pools: [{name: spare, public: true, pools: [{name: nlp}]}]",
        ["pool spare", "a public pool cannot have child pools"],
    ),
    "public pool with shareable": (
        "pools: [{name: spare, public: true, guaranteed: {cpu: 4}, shareable: {cpu: 2}}]",
        ["pool spare", "shareable", "a public pool lends everything"],
    ),
    "shareable above guaranteed": (
        "pools: [{name: nlp, guaranteed: {cpu: 1}, shareable: {cpu: 2}}]",
        ["pool nlp", "shareable cpu (2) is above guaranteed (1)"],
    ),
    "bad duration": (
        "reclaim: {grace: soon}",
        ["reclaim", "expected a duration such as 30s, 10m or 1h, got 'soon'"],
    ),
    "negative duration": (
        "reclaim: {min_loan: -5}",
        ["reclaim", "a duration must be zero or more seconds"],
    ),
    "not YAML": (
        "pools: [ {",
        ["not valid YAML"],
    ),
}


@pytest.mark.parametrize("text, words", INVALID.values(), ids=INVALID.keys())
def test_invalid_configuration_is_refused_naming_pool_and_field(text, words):
    problems = problems_of(text)
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0]


def test_every_problem_is_listed_not_only_the_first():
    problems = problems_of("""
pools:
- name: nlp
  guaranteed: {cpu: 4, gpu: 1}
  max: {cpu: 2}
- name: nlp
  shareable: {memory: -1}
""")
    assert len(problems) == 4
    assert any("pool nlp: guaranteed: unknown resource 'gpu'" in p for p in problems)
    assert any("pool nlp: guaranteed cpu (4) is above max (2)" in p for p in problems)
    assert any("pool nlp: the name is used twice" in p for p in problems)
    assert any("pool nlp: shareable: memory: must not be negative" in p for p in problems)


def test_schema_and_semantic_problems_are_listed_together_naming_pools():
    """A typo in one pool used to hide every other check, and named the pool by its position."""
    problems = problems_of("""
reclaim: {grace: [1]}
pools:
- name: research
  guaranteed: {cpu: 4}
  pools:
  - name: nlp
    colour: red
    guaranteed: {cpu: true, nvidia.com/gpu: 1}
    shareable: {cpu: 1}
  - name: vision
    guaranteed: {cpu: 6, gpu: 1}
- name: spare
  public: true
  pools: [{name: stray, weight: 0}, {guaranteed: {cpu: 1}}, 7]
""")
    assert problems == [
        "reclaim: grace: Input should be a valid string or a valid number or a valid integer",
        "pool nlp: guaranteed: cpu: Input should be a valid string or a valid integer or a valid number",
        "pool nlp: unknown field 'colour'",
        "pool stray: weight: Input should be greater than 0",
        "pools.1.pools.1: name: Field required",
        "pools.1.pools.2: Input should be a valid dictionary or instance of PoolDocument",
        "pool vision: guaranteed: unknown resource 'gpu': expected cpu, memory, nvidia.com/gpu, "
        "nvidia.com/gpu/<model>, nvidia.com/mig-<profile> or an extended resource domain/name",
        "pool research: guaranteed cpu (4) is below its child pools' guarantees (6: nlp, vision)",
        "pool spare: a public pool cannot have child pools",
    ]  # and none for nlp's shareable cpu, judged against a guarantee that was left out


KEYS = ["pools", "name", "reclaim", "grace", "guaranteed", "shareable", "cpu", "nvidia.com/gpu", "weight", "public",
        "budget", "per_day", "colour"]
VALUES = st.none() | st.booleans() | st.integers(-2, 10) | st.sampled_from(["nlp", "ai", "4", "lots", "5m", "Bad_Name"])


@settings(max_examples=300, deadline=None)
@given(st.recursive(VALUES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner,
                                                                                            max_size=4), max_leaves=20))
def test_any_parsed_document_compiles_or_is_refused_with_problems(data):
    try:
        read_config(data)
    except QuotaConfigError as exc:
        assert exc.problems and all(p.strip() for p in exc.problems)


@pytest.mark.parametrize("text, seconds", [
    (90, 90.0), ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("0", 0.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, message", [
    ("", "expected a duration such as 30s, 10m or 1h, got ''"),
    ("1d", "expected a duration such as 30s, 10m or 1h, got '1d'"),
    ("m", "expected a duration such as 30s, 10m or 1h, got 'm'"),
    ("-1s", "expected a duration such as 30s, 10m or 1h, got '-1s'"),
    (True, "expected a duration such as 30s, 10m or 1h, got True"),
    (float("inf"), "a duration must be zero or more seconds, got inf"),
    ("nan", "a duration must be zero or more seconds, got 'nan'"),
    ("-5", "a duration must be zero or more seconds, got '-5'"),
    (-5, "a duration must be zero or more seconds, got -5"),
])
def test_parse_duration_refuses(text, message):
    with pytest.raises(ValueError) as refused:
        parse_duration(text)
    assert str(refused.value) == message


def test_hand_built_pool_limits_in_order():
    pool = Pool("p", guaranteed={"cpu": 1}, max={"cpu": 2})
    assert [name for name, _ in pool.limits()] == ["guaranteed", "max", "shareable", "borrow_limit"]


def test_thousands_of_pools_of_one_name_are_refused_once():
    """What a few hundred bytes of YAML aliases expand to: the repeated name is reported once,
    not once per repeat (the check's time is in benchmarks/quota_decisions.py)."""
    document = parse_document({"pools": [{"name": "a", "pools": [{"name": "a"}] * 20_000}]})
    with pytest.raises(QuotaConfigError) as refused:
        compile_document(document)
    assert refused.value.problems == ["pool a: the name is used twice"]


def test_duplicate_name_of_an_ancestor_is_refused():
    assert "pool ai: the name is used twice" in problems_of("pools: [{name: ai, pools: [{name: ai}]}]")


def test_boolean_amount_is_refused():
    problems_of("pools: [{name: nlp, guaranteed: {cpu: true}}]")
