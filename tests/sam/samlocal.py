"""Runs the project's functions under `sam local invoke` against an emulated AWS (moto in server mode).

Used by tests/sam (make test-sam only). What it does:
- writes a test copy of template.yaml that declares the variables only this test sets (AWS_ENDPOINT_URL;
  `sam local` passes only variables the template declares) and builds image functions FROM the local
  Lambda base image (scripts/build-lambda-base-image.sh), then `sam build`s it;
- runs moto's server in a container on a docker network of its own, published on 127.0.0.1 for the test
  process; the function containers join that network and reach moto by the container's name, so no
  traffic leaves this machine's docker networks and loopback (SAM's `--docker-network host` does not put
  containers in the host's network namespace, so loopback on the host is out of their reach);
- invokes a function with an event and returns its parsed response.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".aws-sam" / "test-sam"
CACHE = REPO / ".cache" / "moto-server"
SAM = Path(os.environ.get("MEDIMAGE_SAM", REPO / ".venv-sam" / "bin" / "sam"))
BASE_IMAGE = os.environ.get("MEDIMAGE_LAMBDA_BASE_IMAGE", "medimage/lambda-python:3.13")
MOTO_VERSION = "5.2.5"
MOTO_IMAGE = f"medimage/moto-server:{MOTO_VERSION}"
# Variables only this test sets: declared (empty) in the test copy of the template.
TEST_VARIABLES = ("AWS_ENDPOINT_URL", "POWERTOOLS_TRACE_DISABLED", "AWS_EC2_METADATA_DISABLED")
PLATFORM_ARGS = [
    *(arg for v in range(34, 16, -1) for arg in ("--platform", f"manylinux_2_{v}_x86_64")),
    *("--platform", "manylinux2014_x86_64", "--python-version", "3.13", "--implementation", "cp"),
    "--only-binary=:all:",
]


def run(
    cmd: list[str], log: Path | None = None, timeout: float = 900, **kw: Any
) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if log is not None:
        log.write_text(
            f"$ {' '.join(map(str, cmd))}\n{proc.stdout}\n--- stderr\n{proc.stderr}", encoding="utf-8"
        )
    if proc.returncode != 0:
        where = f" (log: {log})" if log else ""
        raise RuntimeError(f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} failed{where}:\n{proc.stderr[-3000:]}")
    return proc


# ---------------------------------------------------------------- template and build
def make_test_template_text(text: str, base_image: str = BASE_IMAGE) -> str:
    """template.yaml with the test-only variables declared in Globals and BASE_IMAGE build args pointed at
    the local base image."""
    marker = re.search(
        r"^Globals:\n  Function:\n(?:    .*\n)*?    Environment:\n      Variables:\n", text, re.M
    )
    if not marker:
        raise AssertionError("template.yaml: Globals.Function.Environment.Variables not found")
    declared = "".join(f'        {name}: ""\n' for name in TEST_VARIABLES)
    text = text[: marker.end()] + declared + text[marker.end() :]
    text = re.sub(r"^(\s+BASE_IMAGE:\s*).*$", lambda m: f"{m.group(1)}{base_image}", text, flags=re.M)
    if "DockerBuildArgs:" not in text:  # image functions without build args: BASE_IMAGE after Dockerfile
        text = re.sub(
            r"^(\s+)(Dockerfile: .*\n)",
            lambda m: f"{m[1]}{m[2]}{m[1]}DockerBuildArgs:\n{m[1]}  BASE_IMAGE: {base_image}\n",
            text,
            flags=re.M,
        )
    return text


def sam_build() -> Path:
    """`sam build` of the test template; returns the built template."""
    WORK.mkdir(parents=True, exist_ok=True)
    template = WORK / "template.yaml"
    template.write_text(
        make_test_template_text((REPO / "template.yaml").read_text(encoding="utf-8")), encoding="utf-8"
    )
    build_dir = WORK / "build"
    shutil.rmtree(build_dir, ignore_errors=True)
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    run(
        [
            str(SAM),
            "build",
            "--template-file",
            str(template),
            "--base-dir",
            str(REPO),
            "--build-dir",
            str(build_dir),
        ],
        log=WORK / "sam-build.log",
        timeout=1800,
        cwd=REPO,
        env=env,
    )
    return build_dir / "template.yaml"


# ---------------------------------------------------------------- moto server in a container
def moto_image() -> str:
    """moto's server on the local base image; its packages installed from wheels on this host (cached)."""
    if (
        subprocess.run(
            ["docker", "image", "inspect", MOTO_IMAGE], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return MOTO_IMAGE
    site = CACHE / "site"
    stamp = CACHE / f"site-{MOTO_VERSION}.stamp"
    if not stamp.exists():
        shutil.rmtree(site, ignore_errors=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        run(
            [
                "python3",
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                *PLATFORM_ARGS,
                "--target",
                str(site),
                "-c",
                str(REPO / "constraints.txt"),
                f"moto[s3,sqs,dynamodb,stepfunctions]=={MOTO_VERSION}",
                "flask",
                "flask-cors",
            ],
            log=CACHE / "pip.log",
        )
        stamp.touch()
    (CACHE / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY site /opt/moto\nENV PYTHONPATH=/opt/moto\nEXPOSE 5000\n"
        'ENTRYPOINT ["python3", "-m", "moto.server", "-H", "0.0.0.0", "-p", "5000"]\n',
        encoding="utf-8",
    )
    (CACHE / ".dockerignore").write_text("*.log\n*.stamp\n", encoding="utf-8")
    run(
        ["docker", "build", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", MOTO_IMAGE, str(CACHE)],
        log=CACHE / "docker-build.log",
    )
    return MOTO_IMAGE


@dataclass
class MotoServer:
    name: str
    network: str
    host_port: int

    @property
    def host_endpoint(self) -> str:  # for this test process
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def container_endpoint(self) -> str:  # for the function containers
        return f"http://{self.name}:5000"


@contextmanager
def moto_server(buckets: tuple[str, ...] = ()) -> Iterator[MotoServer]:
    image = moto_image()
    name = f"medimage-sam-moto-{os.getpid()}"
    network = f"medimage-sam-{os.getpid()}"
    run(["docker", "network", "create", network], timeout=60)
    try:
        # Aliases <bucket>.<name> serve virtual-hosted style S3 requests, should a client make them.
        aliases = [a for b in buckets for a in ("--network-alias", f"{b}.{name}")]
        run(
            [
                "docker",
                "run",
                "-d",
                "--rm",
                "--name",
                name,
                "--network",
                network,
                *aliases,
                "-p",
                "127.0.0.1::5000",
                image,
            ],
            timeout=120,
        )
        try:
            port = int(run(["docker", "port", name, "5000/tcp"], timeout=30).stdout.strip().rsplit(":", 1)[1])
            server = MotoServer(name, network, port)
            wait_http(f"{server.host_endpoint}/moto-api/", timeout=60)
            yield server
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False, timeout=60)
    finally:
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False, timeout=60)


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- invoke
@dataclass
class SamLocal:
    built_template: Path
    network: str
    env_vars: dict[str, dict[str, str]]
    image_functions: set[str] = field(default_factory=set)
    timings: dict[str, list[float]] = field(default_factory=dict)

    def invoke(self, function: str, event: dict[str, Any], timeout: float = 600) -> Any:
        WORK.mkdir(parents=True, exist_ok=True)
        event_file = WORK / f"event-{function}.json"
        event_file.write_text(json.dumps(event), encoding="utf-8")
        env_file = WORK / "env-vars.json"
        env_file.write_text(json.dumps(self.env_vars, indent=1), encoding="utf-8")
        cmd = [
            str(SAM),
            "local",
            "invoke",
            function,
            "--template-file",
            str(self.built_template),
            "--event",
            str(event_file),
            "--env-vars",
            str(env_file),
            "--docker-network",
            self.network,
            "--skip-pull-image",
        ]
        if function not in self.image_functions:
            cmd += ["--invoke-image", BASE_IMAGE]
        start = time.monotonic()
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=REPO,
            env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        )
        self.timings.setdefault(function, []).append(round(time.monotonic() - start, 1))
        log = WORK / f"invoke-{function}.log"
        log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n--- stderr\n{proc.stderr}", encoding="utf-8")
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        if proc.returncode != 0 or not lines:
            raise AssertionError(f"sam local invoke {function} failed (log: {log}):\n{proc.stderr[-4000:]}")
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            raise AssertionError(
                f"{function} returned no JSON (log: {log}):\n{proc.stdout[-2000:]}"
            ) from None


def function_env(
    raw_template: dict[str, Any], names: dict[str, str], extra: dict[str, str]
) -> dict[str, dict]:
    """--env-vars for every function: variables whose template value names a resource get the emulated
    resource's name; `extra` (the endpoint and test settings) applies where the variable is declared."""
    globals_env = (
        raw_template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}) or {}
    )
    out: dict[str, dict[str, str]] = {}
    for logical, res in raw_template["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        declared = {**globals_env, **((res["Properties"].get("Environment") or {}).get("Variables") or {})}
        values: dict[str, str] = {}
        for var, value in declared.items():
            ref = None
            if isinstance(value, dict):
                ref = value.get("Ref") or (value.get("Fn::GetAtt") or [None])[0]
            if ref in names:
                values[var] = names[ref]
        values.update({k: v for k, v in extra.items() if k in declared or k in TEST_VARIABLES})
        out[logical] = values
    return out
