"""Malformed and hostile requests against the whole service: a 4xx with a message, never a 5xx.

Schemathesis drives every operation of the app's OpenAPI schema, with the admin token, a viewer
token or none; Hypothesis feeds the admission webhooks AdmissionReviews, and the extender its
arguments, in which any part may be missing or of the wrong type, and bytes that are not JSON at all.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import jsonpatch
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from quota.store import Store
from scheduler.model.cluster import PROJECT_LABEL
from slotwise.server.app import create_app
from slotwise.server.extender import MAX_BODY_BYTES
from slotwise.server.webhooks import ADMISSION_GATE, API_VERSION
from tests.quota_fixtures import ACTOR
from tests.test_k8s_json import POD
from tests.test_server_extender import recorded_cache
from tests.test_server_webhooks import job_pod, review

pytest_plugins = ["tests.quota_fixtures"]

#: Namespaces the webhooks gate: two with a pool, one without (the quota check denies its pods).
MANAGED = {"nlp", "vision", "team-x"}
#: Reproducible (the same examples on every run) and bounded: the whole file takes seconds.
FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])


@pytest.fixture
def tokens(loaded: Store) -> dict[str, str]:
    return {"admin": loaded.create_token("ops", "admin", None, ACTOR),
            "viewer": loaded.create_token("ai-team", "viewer", "ai", ACTOR)}


@pytest.fixture
def app(loaded: Store, tokens: dict[str, str]) -> FastAPI:
    # The MIG endpoint takes the admin token too, so that one header reaches past both checks.
    return create_app(loaded, clock=lambda: 1000.0, managed=MANAGED, mig_token=tokens["admin"])


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


# Schemathesis over the OpenAPI schema ----------------------------------------------------------
@pytest.fixture
def api_schema(app: FastAPI) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def refused_with_a_message(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """Every 4xx says why, as ``{"detail": ...}``."""
    if 400 <= response.status_code < 500:
        detail = response.json().get("detail")
        assert detail, f"{response.status_code} without a detail: {response.text[:200]}"
    return None


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@schema.given(who=st.sampled_from(["admin", "admin", "viewer", None]))
@settings(FUZZ, max_examples=30)  # per operation
def test_no_operation_answers_a_server_error(case: schemathesis.Case, who: str | None, tokens: dict[str, str],
                                             client: TestClient):
    """No server error; every reply's status, content type and body are the ones the schema
    declares (4xx included); every 4xx says why. After a change the service accepted, what it
    stored must read back: the metrics scrape (quota gauges, MIG instances free) works, and the
    exported configuration imports unchanged."""
    headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
    checks = [not_a_server_error, refused_with_a_message, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    response = case.call_and_validate(headers=headers, checks=checks)
    if case.method.upper() != "GET" and case.path.startswith(("/quota/", "/mig/")) and response.status_code < 300:
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        assert client.get("/metrics", headers=admin).status_code == 200
        exported = client.get("/quota/config", headers=admin)
        assert exported.status_code == 200, exported.text
        again = client.put("/quota/config", json=exported.json(), headers=admin)
        assert again.status_code == 200 and again.json() == {"changes": []}, again.text


# The admission webhooks ----------------------------------------------------------------------
#: Every field the model and the mutation read: the recorded pod, with init containers, pod
#: overhead, a host path, another scheduling gate and a priority class's value besides.
RICH_POD = copy.deepcopy(POD)
RICH_POD["metadata"]["annotations"].update({"slotwise.io/gang": "resnet", "slotwise.io/gang-min-members": "2"})
RICH_POD["spec"].update({
    "initContainers": [{"name": "fetch", "restartPolicy": "Always", "securityContext": {"privileged": True},
                        "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}}],
    "overhead": {"cpu": "250m"}, "schedulingGates": [{"name": "example.com/other"}],
})
RICH_POD["spec"]["volumes"].append({"name": "scratch", "hostPath": {"path": "/scratch"}})
RICH_REVIEW = review(RICH_POD, namespace="vision")


def _places(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The path of every value inside a JSON document."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*path, key)
            yield from _places(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield (*path, index)
            yield from _places(inner, (*path, index))


DELETE = object()


def _child(value: Any, step: str | int) -> Any:
    if isinstance(value, dict) and isinstance(step, str):
        return value.get(step)
    if isinstance(value, list) and isinstance(step, int) and step < len(value):
        return value[step]
    return None


def _changed(document: Any, changes: list[tuple[tuple[str | int, ...], Any]]) -> Any:
    """A copy of ``document`` with the value at each path replaced (or deleted), where the path
    still leads somewhere after the changes before it."""
    out = copy.deepcopy(document)
    for path, value in changes:
        parent = out
        for step in path[:-1]:
            parent = _child(parent, step)
        last = path[-1]
        if isinstance(parent, list) and isinstance(last, int) and last < len(parent):
            parent[last] = None if value is DELETE else value  # keeps the paths after it
        elif isinstance(parent, dict) and isinstance(last, str):
            if value is DELETE:
                parent.pop(last, None)
            else:
                parent[last] = value
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
#: Garbage quantities and numbers past what anything counts, beside any JSON value of any type.
wrong = (st.just(DELETE) | json_values | st.sampled_from(["lots", "", "-1", "1e999", "Ki", "99999999999999999999999"])
         | st.sampled_from([2**63 - 1, -(2**63), 2**64 - 1]))
#: An AdmissionReview of a pod creation in a managed namespace, broken in one to three places:
#: any value in it, at any depth (request, uid, labels, containers, a quantity), of a wrong type
#: or missing.
reviews = st.lists(st.tuples(st.sampled_from(list(_places(RICH_REVIEW))), wrong), min_size=1, max_size=3).map(
    lambda changes: _changed(RICH_REVIEW, changes))


def check_reply(client: TestClient, path: str, body: bytes, sent: Any) -> dict[str, Any] | None:
    """Posts ``body`` (``sent``: it parsed) and checks the reply: a 4xx that says why, or a valid
    AdmissionReview v1 answer for the request's uid, whose patch applies to the request's object.
    Returns the patched object, if there was a patch."""
    reply = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 200 or 400 <= reply.status_code < 500, (reply.status_code, reply.text[:300])
    if reply.status_code != 200:
        assert reply.json()["detail"]
        return None
    answer = reply.json()
    note(f"{path} answered {answer}")
    assert (answer["apiVersion"], answer["kind"]) == (API_VERSION, "AdmissionReview")
    response = answer["response"]
    assert set(response) <= {"uid", "allowed", "status", "patchType", "patch", "warnings"}
    assert response["uid"] == sent["request"]["uid"]
    assert isinstance(response["allowed"], bool)
    if not response["allowed"]:
        assert response["status"]["code"] == 422 and response["status"]["message"]
    assert all(isinstance(w, str) for w in response.get("warnings", []))
    if "patch" not in response:
        return None
    assert path == "/webhooks/mutate" and response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"], validate=True))
    assert isinstance(patch, list) and patch
    patched = jsonpatch.apply_patch(sent["request"]["object"], patch)  # raises if it does not apply cleanly
    assert patched["metadata"]["labels"][PROJECT_LABEL]
    assert {"name": ADMISSION_GATE} in patched["spec"]["schedulingGates"]
    return patched


@settings(FUZZ, max_examples=100)
@given(body=reviews)
@example(body=RICH_REVIEW)
@example(body=review(job_pod()))  # no labels, no gates: the whole map and list are added
@example(body=review(job_pod(), namespace="team-x"))  # no pool: the quota check denies it
@example(body=_changed(RICH_REVIEW, [(("request", "object", "spec"), DELETE)]))
def test_fuzzed_admission_reviews_get_a_valid_answer_or_a_4xx(client: TestClient, body: Any):
    sent = json.dumps(body).encode()
    check_reply(client, "/webhooks/validate", sent, body)
    patched = check_reply(client, "/webhooks/mutate", sent, body)
    if patched is not None:  # reinvocationPolicy: IfNeeded: a second call on the patched pod patches nothing
        again = json.loads(json.dumps(body))
        again["request"]["object"] = patched
        assert check_reply(client, "/webhooks/mutate", json.dumps(again).encode(), again) is None


VALID = json.dumps(review(job_pod())).encode()


@settings(FUZZ, max_examples=50)
@given(body=st.integers(0, len(VALID) - 1).map(lambda n: VALID[:n]) | st.binary(max_size=64))
@example(body=b"[" * 100_000)
@example(body=b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": ' + b"{" * 2000)
@example(body=b"\xff\xfe\x00")
def test_truncated_and_non_json_bodies_get_a_400(client: TestClient, body: bytes):
    for path in ("/webhooks/mutate", "/webhooks/validate"):
        reply = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400 and reply.json()["detail"], (path, reply.text[:200])


@pytest.mark.parametrize("method, path", [("PUT", "/quota/config"), ("POST", "/mig/nodes/gpu-1"),
                                          ("POST", "/webhooks/mutate"), ("PUT", "/quota/pools/x")])
def test_bodies_past_the_limit_are_refused_and_change_nothing(client: TestClient, tokens: dict[str, str],
                                                               loaded: Store, method: str, path: str):
    before = client.get("/quota/config", headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
    huge = b'{"pools": [' + b'{"name": "a"},' * (MAX_BODY_BYTES // 14) + b'{"name": "b"}]}'

    def streamed() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading too
        yield from (huge[i:i + 2**20] for i in range(0, len(huge), 2**20))

    for body in (huge, streamed()):
        reply = client.request(method, path, content=body, headers={"Authorization": f"Bearer {tokens['admin']}"})
        assert reply.status_code == 413, reply.text[:200]
    assert client.get("/quota/config", headers={"Authorization": f"Bearer {tokens['admin']}"}).json() == before


# The scheduler extender ------------------------------------------------------------------------
#: ExtenderArgs as kube-scheduler sends them without nodeCacheCapable: the pod and whole nodes.
EXTENDER_ARGS = {"Pod": RICH_POD, "Nodes": {"items": [{"metadata": {"name": name, "labels": {"zone": "a"}}}
                                                      for name in ("gpu-a1", "gpu-b1", "infra-1")]}}
extender_args = st.lists(st.tuples(st.sampled_from(list(_places(EXTENDER_ARGS))), wrong), min_size=1, max_size=3).map(
    lambda changes: _changed(EXTENDER_ARGS, changes))


@pytest.fixture
def extender(loaded: Store) -> TestClient:
    return TestClient(create_app(loaded, cache=recorded_cache()))


@settings(FUZZ, max_examples=100)
@given(body=extender_args)
@example(body=EXTENDER_ARGS)
@example(body=_changed(EXTENDER_ARGS, [(("Nodes", "items", 0, "metadata"), 2)]))
@example(body=_changed(EXTENDER_ARGS, [(("Nodes", "items", 1, "metadata"), None)]))
@example(body=_changed(EXTENDER_ARGS, [(("Nodes", "items"), {"name": "x"})]))
def test_fuzzed_extender_args_get_an_answer_or_a_4xx(extender: TestClient, body: Any):
    """Any part of the pod or of the node items missing or of the wrong type."""
    for verb in ("filter", "prioritize"):
        reply = extender.post(f"/extender/{verb}", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert reply.status_code == 200 or 400 <= reply.status_code < 500, (verb, reply.status_code, reply.text[:300])
        if reply.status_code != 200:
            assert reply.json()["detail"]
