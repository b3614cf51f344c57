from __future__ import annotations

import pytest

from conftest import build_pod
from scheduler.gang.groups import (DEFAULT_TIMEOUT_S, GangError, PodGroup, group_gangs, membership)


def test_slotwise_annotations_name_the_gang_its_minimum_and_timeout():
    pod = build_pod("w0", namespace="nlp", annotations={"slotwise.io/gang": "bert", "slotwise.io/gang-min-members": "4",
                                                        "slotwise.io/gang-timeout": "90"})
    m = membership(pod)
    assert (m.key, m.convention, m.min_members, m.timeout_s) == ("nlp/bert", "slotwise", 4, 90.0)


def test_pod_group_label_takes_its_minimum_from_the_podgroup_then_the_pod_annotation():
    pod = build_pod("w0", labels={"scheduling.x-k8s.io/pod-group": "job42"},
                    annotations={"scheduling.x-k8s.io/min-member": "3"})
    assert membership(pod, {("scheduler-plugins", "default/job42"): PodGroup(2)}).min_members == 2
    assert membership(pod).min_members == 3
    assert membership(pod).convention == "scheduler-plugins"
    # Volcano's PodGroup of the same name is another object: not this gang's.
    assert membership(pod, {("volcano", "default/job42"): PodGroup(2)}).min_members == 3


def test_a_podgroup_timeout_applies_unless_the_pod_sets_its_own():
    groups = {("scheduler-plugins", "default/job42"): PodGroup(None, 30.0)}
    pod = build_pod("w0", labels={"scheduling.x-k8s.io/pod-group": "job42"})
    assert (membership(pod, groups).min_members, membership(pod, groups).timeout_s) == (None, 30.0)
    own = build_pod("w1", labels={"scheduling.x-k8s.io/pod-group": "job42"},
                    annotations={"slotwise.io/gang-timeout": "90"})
    assert membership(own, groups).timeout_s == 90.0
    [gang], _ = group_gangs([pod, build_pod("w2", labels={"scheduling.x-k8s.io/pod-group": "job42"})], groups)
    assert (gang.min_members, gang.timeout_s) == (2, 30.0)  # no minMember: every member


def test_volcano_and_kubeflow_conventions():
    volcano = build_pod("v", annotations={"scheduling.k8s.io/group-name": "pg1"})
    assert membership(volcano, {("volcano", "default/pg1"): PodGroup(5)}).min_members == 5
    kubeflow = build_pod("k", labels={"training.kubeflow.org/job-name": "mnist",
                                      "training.kubeflow.org/replica-type": "worker"})
    assert (membership(kubeflow).key, membership(kubeflow).min_members) == ("default/mnist", None)
    assert membership(build_pod("alone")) is None


def test_group_gangs_needs_every_member_when_no_minimum_is_given():
    labels = {"training.kubeflow.org/job-name": "mnist", "training.kubeflow.org/replica-type": "worker"}
    pods = [build_pod(f"w{k}", labels=labels) for k in range(3)] + [build_pod("solo")]
    gangs, alone = group_gangs(pods)
    assert [(g.key, len(g.members), g.min_members, g.timeout_s) for g in gangs] == [("default/mnist", 3, 3, DEFAULT_TIMEOUT_S)]
    assert [p.name for p in alone] == ["solo"]


@pytest.mark.parametrize("annotations, message", [
    ({"slotwise.io/gang": "g", "slotwise.io/gang-min-members": "zero"}, "positive number"),
    ({"slotwise.io/gang": "g", "slotwise.io/gang-timeout": "-1"}, "positive number"),
])
def test_malformed_gangs_are_rejected_with_the_pod_named(annotations, message):
    with pytest.raises(GangError, match=message):
        membership(build_pod("bad", annotations=annotations))


def test_members_must_agree_on_the_minimum():
    pods = [build_pod(f"w{k}", annotations={"slotwise.io/gang": "g", "slotwise.io/gang-min-members": str(k + 1)})
            for k in range(2)]
    with pytest.raises(GangError, match="disagree"):
        group_gangs(pods)
