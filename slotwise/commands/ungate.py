"""``slotwise ungate``: the emergency release. Lifts slotwise's admission gate from waiting pods
without slotwise running, so that kube-scheduler schedules them as if slotwise were not there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slotwise.console import failure, make_console

console = make_console()


def ungate(
    namespace: Annotated[list[str] | None, typer.Option("--namespace", "-n", metavar="NAMESPACE", help="Release the gated pods of this namespace (repeat for more).")] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Release the gated pods of every namespace.")] = False,
    kubeconfig: Annotated[Path | None, typer.Option(help="The cluster, as this kubeconfig reaches it (default: $KUBECONFIG or ~/.kube/config).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the pods that would be released; change nothing.")] = False,
) -> None:
    """Lift the slotwise.io/admission scheduling gate from pods waiting for slotwise, for when it
    cannot run. Released pods skip quota and gang admission: slotwise, back up, neither charges
    nor evicts them."""
    from kubernetes import client, config
    from kubernetes.client import ApiException

    from slotwise.server.admission_loop import gate_ops
    from slotwise.server.webhooks import ADMISSION_GATE

    if bool(namespace) == all_namespaces:
        raise failure(console, "name the namespaces to release (--namespace) or say --all-namespaces")
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None))
        listed = ([p for ns in namespace or [] for p in core.list_namespaced_pod(ns).items] if namespace
                  else core.list_pod_for_all_namespaces().items)
    except (ApiException, config.ConfigException, OSError) as exc:
        raise failure(console, f"cannot list pods: {exc}") from None
    gated = [p for p in listed if any(g.name == ADMISSION_GATE for g in p.spec.scheduling_gates or [])]
    released = 0
    for p in gated:
        key = f"{p.metadata.namespace}/{p.metadata.name}"
        if dry_run:
            console.print(f"would release {key}", highlight=False)
            continue
        obj = {"spec": {"schedulingGates": [{"name": g.name} for g in p.spec.scheduling_gates]}}
        try:
            core.patch_namespaced_pod(p.metadata.name, p.metadata.namespace, gate_ops(obj),
                                      _content_type="application/json-patch+json", _preload_content=False)
        except ApiException as exc:  # gone, or its gates changed meanwhile: the others still go
            console.print(f"[red]not released[/red] {key}: {exc.status} {exc.reason}", highlight=False)
            continue
        console.print(f"released {key}", highlight=False)
        released += 1
    if not dry_run:
        console.print(f"{released} of {len(gated)} gated pod(s) released", highlight=False)
