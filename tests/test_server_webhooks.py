"""The admission webhooks over real TLS, fed the AdmissionReview v1 JSON the API server sends."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator

import httpx
import jsonpatch
import pytest
import trustme
import uvicorn
from fastapi import FastAPI

from quota.store import Store
from scheduler.model.k8s_json import pod_from_k8s
from slotwise.server.webhooks import ADMISSION_GATE, QuotaCheck, webhook_router
from quota.config import config_from_yaml
from tests.conftest import Clock
from tests.processes import free_port
from tests.quota_fixtures import ACTOR

SERVICE = "slotwise.slotwise-system.svc"
POOLS = """
pools:
- name: nlp
  guaranteed: {nvidia.com/gpu: 4, cpu: 16}
  max: {nvidia.com/gpu: 8}
"""


def review(pod: dict | None, operation: str = "CREATE", namespace: str = "nlp", uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002") -> dict:
    """What the API server POSTs for a pod create (generateName: ``name`` is empty)."""
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "", "namespace": namespace, "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:job-controller",
                         "uid": "1f2c0e3a-0000-0000-0000-000000000009",
                         "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
            "object": pod, "oldObject": None, "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"} if operation == "CREATE" else None,
        },
    }


def job_pod(gpus: str = "2", labels: dict | None = None, annotations: dict | None = None, gates: list | None = None,
            requests: dict | None = None) -> dict:
    spec: dict = {"restartPolicy": "Never",
                  "containers": [{"name": "trainer", "image": "registry.local/nlp/train:1.4",
                                  "resources": {"requests": requests or {"cpu": "8", "nvidia.com/gpu": gpus},
                                                "limits": {} if requests else {"nvidia.com/gpu": gpus}}}]}
    if gates is not None:
        spec["schedulingGates"] = gates
    meta: dict = {"generateName": "train-7-", "namespace": "nlp", "annotations": annotations or {},
                  "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "train-7",
                                       "uid": "3a1b", "controller": True, "blockOwnerDeletion": True}]}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {}}


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple[trustme.CA, str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert(SERVICE)
    where = tmp_path_factory.mktemp("tls")
    key_file, cert_file = where / "key.pem", where / "cert.pem"
    cert.private_key_pem.write_to_path(key_file)
    cert.cert_chain_pems[0].write_to_path(cert_file)
    return ca, str(key_file), str(cert_file)


@pytest.fixture(scope="module")
def quota_store(tmp_path_factory) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('db') / 'quota.db'}")
    store.migrate()
    store.replace_config(config_from_yaml(POOLS), ACTOR)
    yield store
    store.close()


class Webhook:
    """Posts to the TLS server on loopback, verifying its certificate for the service name, as
    the API server does when it dials ``SERVICE``."""

    def __init__(self, client: httpx.Client):
        self.client = client

    def __call__(self, path: str, body: dict | bytes) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post(path, content=content, headers={"Content-Type": "application/json"},
                                extensions={"sni_hostname": SERVICE})


@pytest.fixture(scope="module")
def webhook(tls, quota_store) -> Iterator[Webhook]:
    ca, key_file, cert_file = tls
    app = FastAPI()
    app.include_router(webhook_router({"nlp", "team-a", "kube-system"}, quota_store))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           ssl_keyfile=key_file, ssl_certfile=cert_file))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "webhook server did not start"
        time.sleep(0.02)
    with ca.cert_pem.tempfile() as ca_file, httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ca_file) as client:
        yield Webhook(client)
    server.should_exit = True
    thread.join(timeout=10)


def patch_of(reply: httpx.Response) -> list[dict]:
    response = reply.json()["response"]
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))


def test_the_certificate_is_checked_against_the_service_name(webhook, tls):
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        webhook.client.post("/webhooks/mutate", json=review(job_pod()), extensions={"sni_hostname": "other.svc"})


def test_mutate_labels_and_gates_a_new_pod_once(webhook):
    request = review(job_pod())
    reply = webhook("/webhooks/mutate", request)
    assert reply.status_code == 200
    body = reply.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    assert body["response"]["uid"] == request["request"]["uid"] and body["response"]["allowed"] is True
    pod = jsonpatch.apply_patch(request["request"]["object"], patch_of(reply))
    assert pod["metadata"]["labels"] == {"slotwise.io/project": "nlp", "slotwise.io/workload-kind": "job"}
    assert pod["spec"]["schedulingGates"] == [{"name": ADMISSION_GATE}]
    again = webhook("/webhooks/mutate", review(pod)).json()["response"]  # reinvocationPolicy: IfNeeded
    assert again["allowed"] is True and "patch" not in again


def test_mutate_keeps_what_the_user_set_and_appends_to_other_gates(webhook):
    pod = job_pod(labels={"slotwise.io/workload-kind": "notebook", "app": "x"}, gates=[{"name": "example.com/other"}])
    patch = patch_of(webhook("/webhooks/mutate", review(pod)))
    assert patch == [
        {"op": "add", "path": "/metadata/labels/slotwise.io~1project", "value": "nlp"},
        {"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": ADMISSION_GATE}},
    ]


def test_a_pod_created_on_its_node_is_labelled_but_not_gated(webhook):
    """The API server refuses a pod with both spec.nodeName and a scheduling gate (a static pod's
    mirror is created so): such a pod is labelled for accounting only."""
    pod = job_pod()
    pod["spec"]["nodeName"] = "gpu-a1"
    patched = jsonpatch.apply_patch(pod, patch_of(webhook("/webhooks/mutate", review(pod))))
    assert patched["metadata"]["labels"]["slotwise.io/project"] == "nlp"
    assert "schedulingGates" not in patched["spec"]


def test_a_daemonset_pod_is_labelled_but_not_gated(webhook):
    pod = job_pod()
    pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "dcgm-exporter",
                                           "uid": "6f1c0d2e-0000-0000-0000-0000000000ds", "controller": True}]
    patched = jsonpatch.apply_patch(pod, patch_of(webhook("/webhooks/mutate", review(pod))))
    assert patched["metadata"]["labels"]["slotwise.io/project"] == "nlp"
    assert "schedulingGates" not in patched["spec"]


@pytest.mark.parametrize("request_body", [
    review(job_pod(), namespace="kube-system"),  # system namespaces never, even when listed
    review(job_pod(), namespace="unmanaged"),
    review(job_pod(), operation="UPDATE"),
    review(None, operation="DELETE"),
    {**review(job_pod()), "request": {**review(job_pod())["request"],
                                      "kind": {"group": "apps", "version": "v1", "kind": "Deployment"}}},
])
def test_other_requests_are_allowed_untouched(webhook, request_body):
    for path in ("/webhooks/mutate", "/webhooks/validate"):
        response = webhook(path, request_body).json()["response"]
        assert response == {"uid": request_body["request"]["uid"], "allowed": True}


def test_validate_allows_a_pod_that_can_run(webhook):
    response = webhook("/webhooks/validate", review(job_pod("2"))).json()["response"]
    assert response == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


@pytest.mark.parametrize(("pod", "says"), [
    (job_pod(requests={"cpu": "eight"}), "spec.containers"),
    (job_pod(requests={"cpu": "1", "slotwise.io/gpu-milli": "1500"}), "a share is at most 1000"),
    (job_pod(annotations={"slotwise.io/gang": "job42", "slotwise.io/gang-min-members": "0"}), "gang-min-members"),
    (job_pod(annotations={"slotwise.io/gang-min-members": "two"}), "gang-min-members"),
    (job_pod(annotations={"slotwise.io/gang": "job42", "slotwise.io/gang-timeout": "soon"}), "gang-timeout"),
    (job_pod("9"), "more than the max of pool nlp"),
])
def test_validate_rejects_pods_that_can_never_run(webhook, pod, says):
    response = webhook("/webhooks/validate", review(pod)).json()["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 422 and says in response["status"]["message"]


def test_the_quota_check_reads_a_changed_configuration_within_its_max_age(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'quota.db'}")
    store.migrate()
    store.replace_config(config_from_yaml(POOLS), ACTOR)
    clock = Clock(1000.0)
    check = QuotaCheck(store, clock, max_age_s=1.0)
    nine = pod_from_k8s({**job_pod("9"), "metadata": {"name": "train-7-x", "namespace": "nlp"}})
    assert "more than the max of pool nlp" in check.never(nine)
    store.replace_config(config_from_yaml(POOLS.replace("max: {nvidia.com/gpu: 8}", "max: {nvidia.com/gpu: 16}")), ACTOR)
    clock.now += 0.9
    assert "more than the max of pool nlp" in check.never(nine)  # read 0.9 s ago: still the old max
    clock.now += 0.1
    assert check.never(nine) is None
    store.close()


def test_a_pod_in_a_namespace_without_a_pool_is_denied_by_quota(webhook):
    response = webhook("/webhooks/validate", review(job_pod(), namespace="team-a")).json()["response"]
    assert response["allowed"] is False and "no pool 'team-a'" in response["status"]["message"]


@pytest.mark.parametrize("body", [
    b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x", "obj',
    json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}}).encode(),
    json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}).encode(),
    json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
])
def test_malformed_reviews_get_a_400(webhook, body):
    for path in ("/webhooks/mutate", "/webhooks/validate"):
        assert webhook(path, body).status_code == 400


@pytest.mark.parametrize("gates", [5, "example.com/other", {"name": "example.com/other"}])
def test_scheduling_gates_that_are_not_a_list_are_warned_about_not_patched(webhook, gates):
    # 5 was a 500; a string or an object got a patch appending to it, which does not apply.
    response = webhook("/webhooks/mutate", review(job_pod(gates=gates))).json()["response"]
    assert response["allowed"] is True and "patch" not in response
    assert "spec.schedulingGates: expected a list" in response["warnings"][0]


def test_a_pod_without_a_spec_gets_a_patch_that_applies(webhook):
    pod = job_pod()
    del pod["spec"]  # the patch added /spec/schedulingGates under a spec that is not there
    request = review(pod)
    patched = jsonpatch.apply_patch(request["request"]["object"], patch_of(webhook("/webhooks/mutate", request)))
    assert patched["spec"] == {"schedulingGates": [{"name": ADMISSION_GATE}]}


def test_a_pod_the_model_cannot_read_is_not_mutated_but_warned_about(webhook):
    response = webhook("/webhooks/mutate", review(job_pod(requests={"cpu": "eight"}))).json()["response"]
    assert response["allowed"] is True and "patch" not in response
    assert "spec.containers" in response["warnings"][0]
