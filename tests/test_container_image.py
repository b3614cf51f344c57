"""The Dockerfile builds the image deploy/ runs: every package of the project in it, as the user
the Deployment's securityContext runs, with ``slotwise`` as its entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.test_deploy import container, one

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    joined = " ".join(line.removesuffix("\\") if line.endswith("\\") else line + "\n"
                      for line in lines if line and not line.startswith("#"))
    return [(word.upper(), rest.strip()) for word, _, rest in (line.strip().partition(" ")
                                                              for line in joined.splitlines() if line.strip())]


def packages() -> set[str]:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    return {p.removesuffix("*") for p in patterns}


def test_the_image_holds_every_package_the_project_installs():
    copied = {rest.split()[0] for word, rest in instructions() if word == "COPY" and "--from" not in rest}
    assert packages() <= copied
    allowed = {line.strip("!/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert copied - {"./"} <= allowed | {"pyproject.toml", "README.md"}
    assert {"pyproject.toml", "README.md"} <= allowed  # setuptools reads the readme


def test_the_image_runs_as_the_deployments_user_from_a_slim_base():
    steps = instructions()
    bases = [rest for word, rest in steps if word == "FROM"]
    assert all(base.split()[0].endswith("-slim") for base in bases)
    [user] = [rest for word, rest in steps if word == "USER"]
    pod = one("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert user == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    [entrypoint] = [json.loads(rest) for word, rest in steps if word == "ENTRYPOINT"]
    assert entrypoint == container()["command"]


def test_the_documented_build_tags_the_image_the_deployment_names():
    build = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if "docker build" in line)
    assert f"-t {container()['image']} " in build + " "


def test_the_build_context_the_dockerignore_leaves_makes_a_wheel_with_every_package(tmp_path):
    """What ``pip install .`` in the image sees: only the files the Dockerfile copies."""
    context = tmp_path / "context"
    context.mkdir()
    for word, rest in instructions():
        if word == "COPY" and "--from" not in rest:
            *sources, _ = rest.split()
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(path, context / source)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w",
                            str(tmp_path / "dist"), str(context)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("slotwise-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
    assert packages() <= top
