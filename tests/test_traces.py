"""Trace files: what an admin writes (native CSV / JSON Lines) or downloads (openb) becomes arrivals.

A trace is the input of every simulation, so three things matter: what slotwise writes it reads
back unchanged, each column means what docs/trace-format.md says, and a row it cannot use stops
the run with the file and line named, never with a traceback from deep inside a run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler.model.cluster import PIPELINE_LABEL, PROJECT_LABEL, GpuDemand, Pod, WorkloadKind
from scheduler.model.resources import CPU, GPU, GPU_MILLI, MEMORY, Resources
from simulator.generate import synthetic_arrivals
from simulator.traces import Arrival, TraceError, arrival_from_record, read_trace, write_trace

GiB = 2**30
HEADER = "name,namespace,project,kind,cpu,memory,gpu,gpu_milli,gpu_models,pipeline,arrival,duration\n"
OPENB_HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"


def native_pod(name: str, *, namespace: str = "default", project: str | None = None,
               kind: WorkloadKind = WorkloadKind.JOB, cpu: int = 0, memory: int = 0,
               gpu: GpuDemand | None = None, pipeline: str | None = None) -> Pod:
    """A pod as the native format describes it: the project is also the project label, the
    pipeline also a label, and the GPU demand also a request (whole GPUs or a share)."""
    project = project or namespace
    amounts = {CPU: cpu, MEMORY: memory}
    if gpu is not None:
        amounts[GPU_MILLI if gpu.shared else GPU] = gpu.milli if gpu.shared else gpu.count
    labels = {PROJECT_LABEL: project} | ({PIPELINE_LABEL: pipeline} if pipeline else {})
    return Pod(name, namespace, Resources(amounts), gpu, labels=labels, project=project, kind=kind, pipeline=pipeline)


HAND_MADE = [
    # a GPU share, arriving at a time that has no short decimal form
    Arrival(native_pod("nb-alice", namespace="vision", kind=WorkloadKind.NOTEBOOK, cpu=500, memory=16 * GiB,
                       gpu=GpuDemand(1, 300)), 1 / 3, 28_800.0),
    # whole GPUs restricted to two models, in a project other than its namespace
    Arrival(native_pod("train-0", namespace="team-a", project="nlp", cpu=32_000, memory=256 * GiB,
                       gpu=GpuDemand(4, 1000, frozenset({"A100", "H100"}))), 0.0, 7200.5),
    # a pipeline step, CPU only, an odd memory amount in bytes
    Arrival(native_pod("etl-s1", cpu=1, memory=1_000_000_001, pipeline="etl-run-7"), 12.0, 60.0),
    # a serving replica that runs until the end (duration None)
    Arrival(native_pod("llm-api-0", namespace="serving", kind=WorkloadKind.SERVING, cpu=8000, memory=32 * GiB,
                       gpu=GpuDemand(1, 1000)), 300.0, None),
    # no arrival time, no requests at all
    Arrival(native_pod("bare"), None, None),
]


# Round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("seed", [0, 7])
def test_synthetic_arrivals_round_trip(tmp_path: Path, suffix: str, seed: int) -> None:
    arrivals = synthetic_arrivals(300, seed)
    path = tmp_path / f"trace{suffix}"
    write_trace(arrivals, path)
    assert read_trace(path) == arrivals


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_hand_made_arrivals_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"trace{suffix}"
    write_trace(HAND_MADE, path)
    back = read_trace(path)
    assert back == HAND_MADE
    # spot checks, in case equality were ever loosened
    assert back[1].pod.gpu == GpuDemand(4, 1000, frozenset({"A100", "H100"}))
    assert back[2].pod.pipeline == "etl-run-7" and back[2].pod.requests[MEMORY] == 1_000_000_001
    assert back[3].duration is None and back[4].time is None


def test_written_csv_uses_the_documented_columns(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    write_trace(HAND_MADE[:2], path)
    lines = path.read_text().splitlines()
    assert lines[0] + "\n" == HEADER
    assert lines[2].startswith("train-0,team-a,nlp,job,32,256Gi,4,0,A100|H100,,0.0,7200.5")


def test_written_jsonl_is_one_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    write_trace(HAND_MADE, path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == len(HAND_MADE)
    assert records[0]["gpu_milli"] == 300 and records[0]["gpu"] == 0 and records[0]["kind"] == "notebook"
    assert records[3]["duration"] is None


# What the columns mean ----------------------------------------------------------------------

def test_hand_written_csv_row_becomes_the_right_pod(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text("name,namespace,kind,cpu,memory,gpu_milli,arrival,duration\n"
                    "nb-bob,vision,notebook,500m,16Gi,300,120,\n")
    (arrival,) = read_trace(path)
    pod = arrival.pod
    assert pod.name == "nb-bob" and pod.namespace == "vision" and pod.key == "vision/nb-bob"
    assert pod.project == "vision" and pod.labels[PROJECT_LABEL] == "vision"  # project defaults to the namespace
    assert pod.kind is WorkloadKind.NOTEBOOK
    assert pod.requests == Resources({CPU: 500, MEMORY: 16 * GiB, GPU_MILLI: 300})
    assert pod.gpu == GpuDemand(1, 300) and pod.gpu.shared
    assert (arrival.time, arrival.duration) == (120.0, None)
    assert pod.pipeline is None and PIPELINE_LABEL not in pod.labels


def test_documented_examples_parse(tmp_path: Path) -> None:
    """The examples of docs/trace-format.md, CSV and JSON."""
    (tmp_path / "pods.csv").write_text(
        "name,namespace,kind,cpu,memory,gpu,gpu_milli,gpu_models,arrival,duration\n"
        "train-0,nlp,job,32,256Gi,4,,A100,0,7200\n"
        "nb-alice,vision,notebook,2,8Gi,,500,,120,28800\n"
        "llm-api-0,serving,serving,8,32Gi,1,,,300,\n")
    train, notebook, serving = read_trace(tmp_path / "pods.csv")
    assert train.pod.gpu == GpuDemand(4, 1000, frozenset({"A100"})) and train.pod.requests[GPU] == 4
    assert train.pod.requests[CPU] == 32_000 and train.pod.requests[MEMORY] == 256 * GiB
    assert (train.time, train.duration) == (0.0, 7200.0)
    assert notebook.pod.gpu == GpuDemand(1, 500) and notebook.pod.requests[GPU_MILLI] == 500
    assert serving.pod.kind is WorkloadKind.SERVING and serving.pod.gpu == GpuDemand(1)
    assert serving.duration is None

    (tmp_path / "pods.jsonl").write_text(
        '{"name": "train-0", "namespace": "nlp", "cpu": "32", "memory": "256Gi", "gpu": 4, '
        '"gpu_models": "A100", "arrival": 0, "duration": 7200}\n')
    assert read_trace(tmp_path / "pods.jsonl") == [train]


def test_defaults_when_only_the_name_is_given() -> None:
    arrival = arrival_from_record({"name": "solo"}, "t.csv line 2")
    pod = arrival.pod
    assert (pod.namespace, pod.project, pod.kind) == ("default", "default", WorkloadKind.JOB)
    assert pod.gpu is None and pod.requests == Resources()
    assert (arrival.time, arrival.duration) == (None, None)


def test_json_values_may_be_numbers(tmp_path: Path) -> None:
    path = tmp_path / "pods.jsonl"
    path.write_text('{"name": "j", "cpu": 2, "memory": "1Gi", "gpu_milli": 250, "arrival": 5.5, "duration": null,'
                    ' "project": "speech", "pipeline": "run-1"}\n')
    (arrival,) = read_trace(path)
    assert arrival.pod.requests == Resources({CPU: 2000, MEMORY: GiB, GPU_MILLI: 250})
    assert arrival.pod.project == "speech" and arrival.pod.namespace == "default"
    assert arrival.pod.pipeline == "run-1" and arrival.pod.labels[PIPELINE_LABEL] == "run-1"
    assert (arrival.time, arrival.duration) == (5.5, None)


def test_blank_jsonl_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    path = tmp_path / "pods.jsonl"
    path.write_text('{"name": "a"}\n\n{"name": "b", "kind": "bogus"}\n')
    with pytest.raises(TraceError, match=r"^pods\.jsonl line 3: kind must be job, notebook or serving"):
        read_trace(path)


# Rows slotwise cannot use ----------------------------------------------------------------------

BAD_CSV_ROWS = [
    pytest.param("name,cpu\nok,1\nbad,lots\n", r"^pods\.csv line 3: cpu: invalid quantity 'lots'", id="bad-cpu"),
    pytest.param("name,memory\nbad,16Gx\n", r"^pods\.csv line 2: memory: invalid quantity", id="bad-memory"),
    pytest.param("name,arrival\nok,0\nok2,1\nbad,-5\n", r"^pods\.csv line 4: arrival must not be negative",
                 id="negative-arrival"),
    pytest.param("name,arrival\nbad,nan\n", r"^pods\.csv line 2: arrival must be a number, got .nan.", id="nan-arrival"),
    pytest.param("name,arrival\nbad,inf\n", r"^pods\.csv line 2: arrival must be a number, got .inf.", id="inf-arrival"),
    pytest.param("name,duration\nbad,an hour\n", r"^pods\.csv line 2: duration must be a number, got 'an hour'",
                 id="non-numeric-duration"),
    pytest.param("name,gpu\nbad,1.5\n", r"^pods\.csv line 2: gpu must be a whole number", id="fractional-gpu"),
    pytest.param("name,gpu,gpu_milli\nbad,1,500\n", r"^pods\.csv line 2: give gpu .* or gpu_milli .*not both",
                 id="gpu-and-gpu_milli"),
    pytest.param("name,gpu_milli\nbad,1000\n", r"^pods\.csv line 2: gpu_milli is a share of one GPU, 1\.\.999",
                 id="gpu_milli-1000"),
    pytest.param("name,gpu_milli\nbad,-300\n", r"^pods\.csv line 2: gpu_milli must not be negative",
                 id="negative-gpu_milli"),
    pytest.param("name,kind\nbad,batch\n", r"^pods\.csv line 2: kind must be job, notebook or serving, got 'batch'",
                 id="unknown-kind"),
    pytest.param("name,gpus\nbad,1\n", r"^pods\.csv line 2: unknown column\(s\) gpus; expected name, ",
                 id="unknown-column"),
    pytest.param("name,cpu\nok,1\n,2\n", r"^pods\.csv line 3: name is required", id="missing-name"),
    pytest.param("name,cpu\nok,1\n   ,2\n", r"^pods\.csv line 3: name is required", id="blank-name"),
]


BAD_JSONL = [
    pytest.param('{"name": "a"}\n{"name": "b",\n', r"^pods\.jsonl line 2: not valid JSON", id="invalid-json"),
    pytest.param('{"name": "a"}\n["b", 1]\n', r"^pods\.jsonl line 2: expected a JSON object", id="list-not-object"),
    pytest.param('"just a string"\n', r"^pods\.jsonl line 1: expected a JSON object", id="string-not-object"),
    pytest.param('{"name": "a", "arrival": "soon"}\n', r"^pods\.jsonl line 1: arrival must be a number",
                 id="non-numeric-arrival"),
    pytest.param('{"name": "a", "gpu": 2, "gpu_milli": 100}\n', r"^pods\.jsonl line 1: .*not both",
                 id="gpu-and-gpu_milli"),
    pytest.param('{"name": "a", "colour": "red"}\n', r"^pods\.jsonl line 1: unknown column\(s\) colour",
                 id="unknown-key"),
    pytest.param('{"cpu": "1"}\n', r"^pods\.jsonl line 1: name is required", id="missing-name"),
]


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [pytest.param("pods.csv", *p.values, id=f"csv-{p.id}") for p in BAD_CSV_ROWS]
    + [pytest.param("pods.jsonl", *p.values, id=f"jsonl-{p.id}") for p in BAD_JSONL],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, filename: str, content: str, message: str) -> None:
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(TraceError, match=message):
        read_trace(path)


def test_fractional_gpu_count_in_json_is_rejected(tmp_path: Path) -> None:
    """``gpu`` counts whole GPUs: the CSV reader rejects "1.5" (see above), and the same value as
    a JSON number must not silently become one GPU (nor gpu_milli 250.7 become 250)."""
    path = tmp_path / "pods.jsonl"
    path.write_text('{"name": "a", "gpu": 1.5}\n')
    with pytest.raises(TraceError, match=r"^pods\.jsonl line 1: gpu must be a whole number"):
        read_trace(path)


def test_duplicate_pod_names_are_rejected_with_the_line(tmp_path: Path) -> None:
    """docs/trace-format.md: ``name`` is unique within its namespace, and a row that cannot be
    used stops the run with its file and line. A duplicate otherwise surfaces only later, as a
    bare "pod default/a is already assigned" from the snapshot in the middle of a run."""
    path = tmp_path / "pods.csv"
    path.write_text("name,namespace,gpu\na,default,1\na,other,1\na,default,1\n")  # same name, other namespace: fine
    with pytest.raises(TraceError, match=r"^pods\.csv line 4: "):
        read_trace(path)


def test_error_in_an_openb_trace_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text(OPENB_HEADER + "p0,1000,1024,0,0,,LS,Running,0,10,0\np1,x,1024,0,0,,LS,Running,0,10,0\n")
    with pytest.raises(TraceError, match=r"^pods\.csv line 3: column 'cpu_milli' must be an integer, got 'x'"):
        read_trace(path)


def test_openb_deletion_before_creation_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text(OPENB_HEADER + "p0,1000,1024,1,500,,LS,Running,100,50,100\n")
    with pytest.raises(TraceError, match=r"^pods\.csv line 2: deletion_time 50 is before creation_time 100"):
        read_trace(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such file"):
        read_trace(tmp_path / "absent.csv")
    with pytest.raises(TraceError, match="no such file"):
        read_trace(tmp_path)  # a directory is not a trace


def test_trace_error_is_a_value_error() -> None:
    """Callers that catch ValueError (the CLI) also catch trace errors."""
    assert issubclass(TraceError, ValueError)


# openb ---------------------------------------------------------------------------------------

def test_small_openb_trace_gives_times_and_durations(tmp_path: Path) -> None:
    path = tmp_path / "openb.csv"
    path.write_text(OPENB_HEADER
                    + "p0,6000,12288,1,460,,LS,Running,100,350,100\n"
                    + "p1,8000,1024,2,1000,A100|V100M32,LS,Running,200,,200\n"
                    + "p2,4000,1024,0,0,,BE,Running,,,\n")
    shared, multi, cpu = read_trace(path)
    assert (shared.time, shared.duration) == (100.0, 250.0)
    assert shared.pod.gpu == GpuDemand(1, 460) and shared.pod.requests[GPU_MILLI] == 460
    assert (multi.time, multi.duration) == (200.0, None)  # no deletion: runs until the end
    assert multi.pod.gpu == GpuDemand(2, 1000, frozenset({"A100", "V100M32"}))
    assert (cpu.time, cpu.duration) == (None, None) and cpu.pod.gpu is None


def test_openb_default_trace(openb: Path) -> None:
    arrivals = read_trace(openb / "openb_pod_list_default.csv")
    assert len(arrivals) == 8152
    assert len({a.pod.key for a in arrivals}) == 8152
    assert all(a.time is not None and a.duration is not None for a in arrivals)  # every row has both times
    first = arrivals[0]  # openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0
    assert first.pod.name == "openb-pod-0000"
    assert (first.time, first.duration) == (0.0, 12_537_496.0)
    assert first.pod.gpu == GpuDemand(1, 1000) and first.pod.requests[CPU] == 12_000
    second = arrivals[1]  # openb-pod-0001,6000,12288,1,460,,LS,Running,427061,12902960,427061
    assert (second.time, second.duration) == (427_061.0, 12_902_960.0 - 427_061.0)
    assert all(a.duration >= 0 for a in arrivals)


def test_openb_variant_without_time_columns(openb: Path) -> None:
    arrivals = read_trace(openb / "openb_pod_list_multigpu30.csv")
    assert len(arrivals) == 8508
    assert all(a.time is None and a.duration is None for a in arrivals)
