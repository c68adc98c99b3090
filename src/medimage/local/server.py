"""`medimage up`: the whole pipeline as a local service that real AWS clients (the AWS CLI, boto3) talk to.

moto runs in server mode on loopback in this process (``ThreadedMotoServer``), so the in-process patches
of ``moto_patches`` apply to what it serves; ``LocalAws`` creates the template's resources there by the
code path the demo uses, and its pollers deliver events through the same ``LocalAws.deliver``. The API
Gateway routes are served on their own port by the inference handler. Everything lives in memory.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from medimage.checkout import default_template
from medimage.core.errors import UpProblem
from medimage.core.gate import verdict
from medimage.local.account import REGION
from medimage.local.apigateway import make_http_handler
from medimage.local.environment import LocalAws
from medimage.template_file import load_template, resources_of_type

log = logging.getLogger("medimage.local")

# What `up` imports beyond the core, and the distribution that provides each.
REQUIRED_MODULES = {
    "flask": "moto[server]",
    "flask_cors": "moto[server]",
    "moto": "moto",
    "yaml": "pyyaml",
    "tensorflow": "tensorflow-cpu (training/train.py)",
    "ai_edge_litert": "ai-edge-litert (the inference function)",
}
PROGRESS_PREFIXES = ("epoch", "Epoch", "metric", "train.py")


@dataclass
class UpOptions:
    workdir: Path = Path("up-output")
    host: str = "127.0.0.1"
    port: int = 4566
    api_port: int = 8080
    epochs: int | None = None
    min_accuracy: float | None = None
    template: Path | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    dataset: str = "chestxray2017"

    @property
    def default_dataset(self) -> str:
        """The dataset a request that names none is for: the template's InferenceDefaultDataset when given."""
        return self.parameters.get("InferenceDefaultDataset", self.dataset)


@dataclass
class Running:
    """What a started `up` serves (``stack.json`` is this, written for clients)."""

    env: LocalAws
    endpoint_url: str
    api_url: str

    def stack(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "bucket": self.env.bucket,
            "table": self.env.table,
            "state_machine_arn": self.env.state_machine_arn,
            "bulk_import_state_machine_arn": self.env.refs.get("BulkImportStateMachine"),
            "api_url": self.api_url,
            "queues": self.env.queue_urls(),
            # The names of the template's alarms, by logical id (`aws cloudwatch set-alarm-state`).
            "alarms": {
                k: self.env.refs[k] for k in resources_of_type(self.env.template, "AWS::CloudWatch::Alarm")
            },
        }


def check_dependencies() -> None:
    missing = sorted(
        {dist for mod, dist in REQUIRED_MODULES.items() if importlib.util.find_spec(mod) is None}
    )
    if missing:
        raise UpProblem(
            f"missing dependencies: {', '.join(missing)} (install the project with `make install`)"
        )


def check_port_free(host: str, port: int, flag: str) -> None:
    """Refuse a port something already listens on before any thread starts (moto's server thread would
    otherwise die with the error while ``start()`` waits for it)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UpProblem(
                f"{host}:{port} is already in use ({exc.strerror}): stop what uses it or pass {flag}"
            ) from None


def check_template(path: Path) -> None:
    try:
        template = load_template(path)
    except Exception as exc:  # missing, unreadable, or not YAML: one line whatever the parser says
        detail = " ".join(str(exc).split())
        raise UpProblem(f"cannot read the template {path}: {type(exc).__name__}: {detail}") from None
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise UpProblem(f"the template {path} has no Resources mapping")


def template_parameters(opts: UpOptions) -> dict[str, str]:
    """A commit trains on any number of new images unless told otherwise, as in the demo."""
    parameters = {"MinNewImages": "1", **opts.parameters}
    if opts.epochs is not None:
        parameters["TrainingEpochs"] = str(opts.epochs)
    if opts.min_accuracy is not None:
        parameters["MinAccuracyOverride"] = str(opts.min_accuracy)
    return parameters


def progress_trainer(workdir: Path) -> Callable[..., Any]:
    """The real train.py in a subprocess (the default trainer), its epoch lines logged as they come and
    its whole output kept in ``<workdir>/training-<time>.log``."""

    def trainer(channels: Any, hyperparameters: Any, model_dir: Path, output_dir: Path) -> Any:
        from medimage.training.runner import run_train_script

        log_path = workdir / f"training-{time.strftime('%Y%m%dT%H%M%S')}.log"
        log.info("SageMaker training job: train.py %s (log %s)", json.dumps(hyperparameters), log_path)

        def on_line(text: str) -> None:
            if text.startswith(PROGRESS_PREFIXES) or "early stop" in text.lower():
                log.info("  train.py | %s", text.strip()[:160])

        return run_train_script(
            channels, hyperparameters, model_dir, output_dir, on_line=on_line, log_path=log_path
        )

    return trainer


@contextmanager
def serving(opts: UpOptions, stop: threading.Event) -> Iterator[Running]:
    """Start moto, the template's resources, the pollers, the execution watcher and the API; stop them all
    when the block ends."""
    check_dependencies()
    template = (opts.template or default_template()).resolve()
    check_template(template)
    check_port_free(opts.host, opts.port, "--port")
    check_port_free(opts.host, opts.api_port, "--api-port")
    if opts.port == opts.api_port and opts.port:
        raise UpProblem("--port and --api-port must differ")
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    workdir = opts.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto_server = ThreadedMotoServer(ip_address=opts.host, port=opts.port, verbose=False)
    moto_server.start()
    api: ThreadingHTTPServer | None = None
    threads: list[threading.Thread] = []
    try:
        host, port = moto_server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        env = LocalAws(
            template_path=template,
            parameters=template_parameters(opts),
            env_overrides={"MODEL_CHECK_INTERVAL_S": "0", "DEFAULT_DATASET": opts.default_dataset},
            endpoint_url=endpoint_url,
            visibility_timeout_s=None,
        )
        with env.running(trainer=progress_trainer(workdir), work_dir=workdir):
            inference = next(fn for name, fn in env.functions.items() if "Inference" in name)
            api = ThreadingHTTPServer(
                (opts.host, opts.api_port), make_http_handler(_logged(inference.invoke), "medimage-up")
            )
            threads.append(threading.Thread(target=api.serve_forever, name="api", daemon=True))
            threads.append(
                threading.Thread(target=watch_executions, args=(env, stop), name="watcher", daemon=True)
            )
            for thread in threads:
                thread.start()
            threads += env.start_pollers(stop)
            api_host, api_port = api.server_address[:2]
            yield Running(env, endpoint_url, f"http://{api_host}:{api_port}/")
            stop.set()
            api.shutdown()
            for thread in threads:
                thread.join(timeout=5)
            terminate_children()
    finally:
        stop.set()
        if api is not None:
            api.server_close()
        moto_server.stop()


def _logged(invoke: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def call(event: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        result = invoke(event)
        log.info(
            "InferenceFunction <- apigateway:%s %s | %.2f s | %s",
            event["httpMethod"],
            event["path"],
            time.perf_counter() - started,
            result.get("statusCode"),
        )
        return result

    return call


def watch_executions(env: LocalAws, stop: threading.Event, interval_s: float = 1.0) -> None:
    """Log each training execution when it starts and when it ends, with the gate's decision."""
    sfn = env.client("stepfunctions")
    seen: dict[str, str] = {}
    while not stop.wait(interval_s):
        try:
            executions = sfn.list_executions(stateMachineArn=env.state_machine_arn)["executions"]
            for execution in executions:
                arn, status = execution["executionArn"], execution["status"]
                if seen.get(arn) == status:
                    continue
                if arn not in seen:
                    payload = json.loads(sfn.describe_execution(executionArn=arn).get("input") or "{}")
                    log.info(
                        "execution %s started: dataset %s, manifest %s",
                        execution["name"],
                        payload.get("dataset"),
                        payload.get("manifest_version"),
                    )
                seen[arn] = status
                if status != "RUNNING":
                    log.info(
                        "execution %s %s",
                        execution["name"],
                        execution_summary(sfn.describe_execution(executionArn=arn)),
                    )
        except Exception:
            if stop.is_set():
                return
            log.exception("watching the executions failed")


def execution_summary(described: dict[str, Any]) -> str:
    status = described["status"]
    if status != "SUCCEEDED":
        return f"{status}: {described.get('error')} {str(described.get('cause') or '')[:300]}"
    output = json.loads(described.get("output") or "{}")
    gate = output.get("gate") or {}
    decision = gate.get("decision") if isinstance(gate.get("decision"), dict) else gate
    accuracy, version = decision.get("accuracy"), decision.get("version")
    return f"SUCCEEDED: gate {verdict(decision)}, test accuracy {accuracy}, version {version}"


def terminate_children(grace_s: float = 3.0) -> None:
    """Stop the training subprocesses still running (SIGTERM, then SIGKILL after ``grace_s``)."""
    pids = child_pids()
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _alive(pid)]
        time.sleep(0.1)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def child_pids() -> list[int]:
    """This process's children, from Linux's /proc (none where it is absent)."""
    pids: list[int] = []
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            pids += [int(p) for p in children.read_text().split()]
        except OSError:
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return waited == 0


def _signal(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)
