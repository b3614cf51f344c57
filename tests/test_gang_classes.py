from __future__ import annotations

import pytest

from conftest import build_node, build_pod, build_snapshot
from scheduler.placement.classes import DEFAULT_CLASSES, ClassConfigError, classes_from_mapping, classes_from_yaml
from scheduler.gang.groups import membership
from scheduler.model.cluster import WorkloadKind
from scheduler.placement.engine import Placer
from scheduler.placement.profile import build_profile


def test_overrides_change_only_what_they_name_and_are_checked():
    classes = classes_from_mapping({"serving": {"gpu_pack": True}, "notebook": {"gpu_pack": False}})
    assert classes[WorkloadKind.SERVING].gpu_pack and classes[WorkloadKind.SERVING].spread_replicas
    assert not classes[WorkloadKind.NOTEBOOK].gpu_pack
    assert classes[WorkloadKind.JOB] == DEFAULT_CLASSES[WorkloadKind.JOB]
    for bad, message in (({"batch": {}}, "unknown workload class"), ({"job": {"gangs": True}}, "unknown setting"),
                         ({"job": {"gang": "yes"}}, "true or false")):
        with pytest.raises(ClassConfigError, match=message):
            classes_from_mapping(bad)


def test_replicas_of_one_deployment_are_spread_by_the_default_profile():
    snap = build_snapshot([build_node("n1", gpus=2), build_node("n2", gpus=2)],
                          [build_pod("r0", on="n1", at=[0], gpus=1, kind=WorkloadKind.SERVING, deployment="api")])
    placer = Placer(build_profile())
    replica = build_pod("r1", gpus=1, kind=WorkloadKind.SERVING, deployment="api")
    assert placer.decide(snap, replica).node == "n2"  # apart, though gpu-pack alone would pick n1
    job = build_pod("j", gpus=1)
    assert placer.decide(snap, job).node == "n1"  # jobs are packed
    unspread = Placer(build_profile(classes=classes_from_mapping({"serving": {"spread_replicas": False,
                                                                              "gpu_pack": True}})))
    assert unspread.decide(snap, replica).node == "n1"


def test_a_class_that_is_not_gang_scheduled_ignores_group_labels():
    notebook = build_pod("nb", kind=WorkloadKind.NOTEBOOK, annotations={"slotwise.io/gang": "g"})
    assert membership(notebook) is None
    assert membership(build_pod("w", annotations={"slotwise.io/gang": "g"})) is not None


def test_overrides_are_read_from_yaml_with_clear_errors():
    classes = classes_from_yaml("serving: {gpu_pack: true}\njob: {gang: false}\n")
    assert classes[WorkloadKind.SERVING].gpu_pack and not classes[WorkloadKind.JOB].gang
    for text, message in (("serving: [1]", "expected kinds mapped to settings"), ("job: {gang: 1}", "true or false"),
                          ("job: {gang: [", "not valid YAML")):
        with pytest.raises(ClassConfigError, match=message):
            classes_from_yaml(text)
