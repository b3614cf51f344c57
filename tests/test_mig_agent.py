"""The node agent reads layouts through (fake) NVML and reports them to the router over real HTTP."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pynvml
import pytest
import uvicorn
from fastapi import FastAPI
from mig_fake_nvml import A30_PROFILES, FakeGpu, FakeInstance, FakeNvml

from mig.agent import NvmlUnavailable, check_nvml, post, read_node, report_url, run
from slotwise.server.mig_api import mig_router
from mig.report import NodeReport
from mig.store import MemoryLayoutStore

TOKEN = "s3cret"


def fake_node() -> FakeNvml:
    return FakeNvml([
        FakeGpu("NVIDIA A100-SXM4-80GB", instances=[FakeInstance(9, 4, 4, busy=True), FakeInstance(14, 0, 2)]),
        FakeGpu("NVIDIA A30", profiles=A30_PROFILES, instances=[FakeInstance(14, 0, 1, busy=True), FakeInstance(5, 2, 2)]),
        FakeGpu("Tesla T4", mig_capable=False),
        FakeGpu("NVIDIA A100-SXM4-80GB", mig_enabled=False),
    ])


def test_layouts_are_read_by_profile_info_not_by_profile_id():
    nvml = fake_node()
    report = read_node("gpu-a1", nvml)
    layouts = report.layouts()
    # Profile ID 14 is a 2g on the A100 and a 1g on the A30: names come from each GPU's profile info.
    assert str(layouts[0]) == "2g.20gb@0 3g.40gb@4*"
    assert str(layouts[1]) == "1g.6gb@0* 2g.12gb@2"
    assert 2 not in layouts  # not MIG-capable
    assert str(layouts[3]) == "(empty)" and not report.gpus[-1].mig_enabled
    assert report.gpus[0].product == "NVIDIA-A100-SXM4-80GB"
    assert nvml.initialised == 0  # nvmlShutdown after every read


@pytest.fixture(scope="module")
def served():
    """The router in a real uvicorn server on a random loopback port."""
    store = MemoryLayoutStore()
    app = FastAPI()
    app.include_router(mig_router(store, TOKEN))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", store
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_agent_reports_to_the_control_plane_over_http(served):
    url, store = served
    lines: list[str] = []
    run("gpu-a1", url, lambda: TOKEN, interval=5, nvml=fake_node(), rounds=2, sleep=lambda s: None, log=lines.append)
    assert lines == [f"reported gpu-a1 to {url}/mig/nodes/gpu-a1"] * 2
    stored = store.get("gpu-a1")
    assert stored == read_node("gpu-a1", fake_node())
    got = httpx.get(f"{url}/mig/nodes/gpu-a1", headers={"Authorization": f"Bearer {TOKEN}"})
    assert NodeReport.model_validate(got.json()) == stored
    assert "gpu-a1" in httpx.get(f"{url}/mig/nodes", headers={"Authorization": f"Bearer {TOKEN}"}).json()


def test_a_wrong_token_is_refused_and_logged(served):
    url, store = served
    with pytest.raises(httpx.HTTPStatusError, match="401: missing or wrong bearer token"):
        post(read_node("gpu-b1", fake_node()), url, "wrong")
    lines: list[str] = []
    run("gpu-b1", url, lambda: "wrong", interval=5, nvml=fake_node(), rounds=1, log=lines.append)
    assert lines == ["report failed: 401: missing or wrong bearer token"]
    assert store.get("gpu-b1") is None


def test_nvml_that_cannot_start_is_refused_once_and_a_failing_round_is_retried(served):
    missing = fake_node()
    missing.nvmlInit = lambda: (_ for _ in ()).throw(missing.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    with pytest.raises(NvmlUnavailable, match="NVML cannot start"):
        check_nvml(missing)
    check_nvml(fake_node())  # a node with a driver passes

    url, store = served
    flaky, lines = fake_node(), []
    healthy_count = flaky.nvmlDeviceGetCount
    rounds = iter([lambda: (_ for _ in ()).throw(flaky.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)), healthy_count])
    flaky.nvmlDeviceGetCount = lambda: next(rounds)()
    run("gpu-a1", url, lambda: TOKEN, interval=5, nvml=flaky, rounds=2, sleep=lambda s: None, log=lines.append)
    assert lines[0].startswith("report failed: ") and lines[1] == f"reported gpu-a1 to {url}/mig/nodes/gpu-a1"
    assert store.get("gpu-a1") is not None


def test_report_url():
    assert report_url("https://cp.example/", "gpu-a1") == "https://cp.example/mig/nodes/gpu-a1"


@pytest.fixture
def client(served):
    with httpx.Client(base_url=served[0], headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield http


def gpu(**overrides):
    return {"index": 0, "product": "NVIDIA-A100-SXM4-80GB", "mig_enabled": True,
            "instances": [{"profile": "3g.40gb", "start": 4, "size": 4, "in_use": True}], **overrides}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"node": "other", "gpus": [gpu()]}, "body reports node 'other' but was posted for 'gpu-c1'"),
        ({"node": "gpu-c1", "gpus": [gpu(product="Tesla-T4")]}, "GPU 0: GPU product 'Tesla-T4' is not MIG-capable"),
        ({"node": "gpu-c1", "gpus": [gpu(instances=[{"profile": "2g.20gb", "start": 6, "size": 2}])]},
         "GPU 0: 2g.20gb cannot start at slot 6 (valid: 0, 2, 4)"),
        ({"node": "gpu-c1", "gpus": [gpu(instances=[{"profile": "3g.40gb", "start": 0, "size": 2}])]},
         "GPU 0: 3g.40gb spans 4 memory slices, not 2"),
        ({"node": "gpu-c1", "gpus": [gpu(instances=[{"profile": "3g.20gb", "start": 0, "size": 4}])]},
         "A100-80GB has no MIG profile '3g.20gb'"),
        ({"node": "gpu-c1", "gpus": [gpu(), gpu()]}, "each GPU index may appear once"),
        ({"node": "gpu-c1", "gpus": [gpu(mig_enabled=False)]}, "instances reported while MIG mode is disabled"),
        ({"node": "gpu-c1"}, "gpus: Field required"),
        ({"node": "gpu-c1", "gpus": [gpu(index=-1)]}, "gpus.0.index: Input should be greater than or equal to 0"),
    ],
)
def test_bad_reports_get_422_with_what_is_wrong(client, body, message):
    response = client.post("/mig/nodes/gpu-c1", json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_non_json_and_unknown_nodes(client):
    assert client.post("/mig/nodes/gpu-d1", content=b"{not json").json() == {"detail": "body is not JSON"}
    too_deep = client.post("/mig/nodes/gpu-d1", content=b"[" * 100_000)  # the parser's recursion limit: was a 500
    assert (too_deep.status_code, too_deep.json()) == (400, {"detail": "body is not JSON"})
    missing = client.get("/mig/nodes/nowhere")
    assert (missing.status_code, missing.json()["detail"]) == (404, "no layout reported for node 'nowhere'")
    assert client.post("/mig/nodes/gpu-d1", json={"node": "gpu-d1", "gpus": [gpu()]}).status_code == 204
    assert client.get("/mig/nodes/gpu-d1").json()["gpus"][0]["instances"][0]["profile"] == "3g.40gb"
    assert client.get("/mig/nodes", headers={"Authorization": "Basic x"}).status_code == 401
