"""``slotwise gpu-reservation``: what a GPU share group's reservation pod runs (docs/gpu-sharing.md)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from slotwise.console import failure, make_console

console = make_console()
#: The API server may be out of reach when the pod starts: retry, at most this far apart.
RETRY_MAX_S = 30.0


def gpu_reservation(
    kubeconfig: Annotated[Path | None, typer.Option(help="Reach the API server with this kubeconfig (default: the pod's service account).")] = None,
    hold: Annotated[bool, typer.Option(help="After reporting, hold the GPU until terminated (--no-hold: report and exit).")] = True,
) -> None:
    """Report the GPU the NVIDIA device plugin gave this pod (NVIDIA_VISIBLE_DEVICES) as its
    slotwise.io/gpu-device annotation, then hold it: the GPU's shares run on that device."""
    from kubernetes import client, config
    from kubernetes.client import ApiException
    from urllib3.exceptions import HTTPError

    from slotwise.server.gpu_shares import DEVICE_ANNOTATION, device_of

    try:
        device = device_of(os.environ)
        name, namespace = os.environ["POD_NAME"], os.environ["POD_NAMESPACE"]
    except ValueError as exc:
        raise failure(console, exc) from None
    except KeyError as exc:
        raise failure(console, f"{exc.args[0]} is not set: the pod's manifest passes it (the downward API)") from None
    if kubeconfig is None:
        config.load_incluster_config()
        core = client.CoreV1Api()
    else:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    wait = 1.0
    while True:
        try:
            core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": {DEVICE_ANNOTATION: device}}},
                                      _preload_content=False)
            break
        except (ApiException, HTTPError) as exc:
            console.print(f"reporting {device} on {namespace}/{name} failed ({exc}); retrying in {wait:.0f} s",
                          highlight=False, soft_wrap=True)
            if stop.wait(wait):
                raise typer.Exit(1) from None
            wait = min(wait * 2, RETRY_MAX_S)
    console.print(f"{namespace}/{name} holds GPU {device}", highlight=False)
    if hold:
        stop.wait()
