from __future__ import annotations

import numpy as np
import pytest

from conftest import build_node, build_pod, build_snapshot
from scheduler.gang.classes import (DEFAULT_CLASSES, ClassConfigError, classes_from_mapping, idle_notebooks,
                                    may_burst, may_preempt, replica_spread_scores)
from scheduler.model.cluster import WorkloadKind


def test_overrides_change_only_what_they_name_and_are_checked():
    classes = classes_from_mapping({"serving": {"burst": True}, "notebook": {"idle_after_s": 1800}})
    assert classes[WorkloadKind.SERVING].burst and classes[WorkloadKind.SERVING].spread_replicas
    assert classes[WorkloadKind.NOTEBOOK].idle_after_s == 1800
    assert classes[WorkloadKind.JOB] == DEFAULT_CLASSES[WorkloadKind.JOB]
    for bad, message in (({"batch": {}}, "unknown workload class"), ({"job": {"gangs": True}}, "unknown setting"),
                         ({"job": {"gang": "yes"}}, "true or false")):
        with pytest.raises(ClassConfigError, match=message):
            classes_from_mapping(bad)


def test_an_active_notebook_is_preempted_only_by_its_pool_owner():
    nb = build_pod("nb", kind=WorkloadKind.NOTEBOOK)
    assert not may_preempt(nb, DEFAULT_CLASSES, session_active=True, by_pool_owner=False).allowed
    assert may_preempt(nb, DEFAULT_CLASSES, session_active=True, by_pool_owner=True).allowed
    assert may_preempt(nb, DEFAULT_CLASSES, session_active=False, by_pool_owner=False).allowed
    assert may_preempt(build_pod("j"), DEFAULT_CLASSES, session_active=False, by_pool_owner=False).allowed
    serving = build_pod("s", kind=WorkloadKind.SERVING)
    assert not may_preempt(serving, DEFAULT_CLASSES, session_active=False, by_pool_owner=True).allowed
    assert not may_burst(serving, DEFAULT_CLASSES).allowed and may_burst(build_pod("j"), DEFAULT_CLASSES).allowed


def test_idle_gpu_notebooks_are_flagged_from_utilisation_samples():
    hour = 3600.0
    samples = {
        "team/idle": [(t * 600.0, 0.6 if t < 3 else 0.01) for t in range(13)],  # busy until 1800 s
        "team/busy": [(t * 600.0, 0.01 if t != 10 else 0.4) for t in range(13)],
        "team/new": [(7000.0, 0.0)],  # too little data in the window
    }
    flagged = idle_notebooks(samples, now=2 * hour, classes=DEFAULT_CLASSES)
    assert [(f.pod, f.idle_since) for f in flagged] == [("team/idle", 1200.0)]
    assert "below 5% for 1.7 h" in flagged[0].reason


def test_replicas_of_one_deployment_are_spread():
    label = {"slotwise.io/deployment": "api"}
    snap = build_snapshot([build_node("n1"), build_node("n2")], [build_pod("r0", on="n1", labels=label)])
    scores = replica_spread_scores(snap, build_pod("r1", labels=label), np.array([0, 1]))
    assert scores[1] > scores[0]
    assert replica_spread_scores(snap, build_pod("other"), np.array([0, 1])) is None
