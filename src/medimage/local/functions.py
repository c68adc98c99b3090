"""Running the project's real Lambda handlers in-process, as the Lambda service would call them.

A function is found through ``template.yaml``: its ``CodeUri`` (zip functions) or the folder of its
Dockerfile (image functions), and its ``Handler`` (``app.lambda_handler``). Its environment is the
template's Globals and its own variables, resolved to the local resources.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from medimage.checkout import project_file
from medimage.local.account import ACCOUNT, REGION
from medimage.local.log_format import apply_json_log_format
from medimage.local.template import Resolver
from medimage.template_file import resources_of_type

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str = "medimage-local"
    memory_limit_in_mb: int = 512
    timeout_s: int = 60
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_s * 1000


# Read when a handler module loads (by Powertools, by the local runtime's log format), so functions sharing
# one process may differ in them; Lambda sets the two AWS_LAMBDA_LOG_* from a function's LoggingConfig.
PER_FUNCTION_ENV = frozenset({"POWERTOOLS_SERVICE_NAME", "AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL"})


@dataclass(frozen=True)
class LocalFunction:
    """One function, run as one warm Lambda container: one invocation at a time (its module state, a
    Powertools batch processor for example, is not shared between concurrent invocations).

    ``shared_env``: the process environment already holds this function's variables (see
    ``share_environment``), so an invocation does not swap ``os.environ`` while others may run."""

    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    memory_mb: int = 512
    timeout_s: int = 60
    shared_env: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def load(self) -> Handler:
        module_name, _, attr = self.handler.rpartition(".")
        path = self.code_dir / (module_name.replace(".", "/") + ".py")
        unique = f"medimage_local_fn_{self.logical_id}"
        module = sys.modules.get(unique)
        if module is None:
            spec = importlib.util.spec_from_file_location(unique, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load handler {self.handler} from {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[unique] = module
            with self.env():
                spec.loader.exec_module(module)
            if self.environment.get("AWS_LAMBDA_LOG_FORMAT") == "JSON":
                apply_json_log_format(module, self.environment.get("AWS_LAMBDA_LOG_LEVEL", "INFO"))
        return getattr(module, attr)

    def reset(self) -> None:
        """Forget the loaded handler module (and every client and cache it holds): the next invocation
        is a cold start in a new container, as after a runtime that died."""
        sys.modules.pop(f"medimage_local_fn_{self.logical_id}", None)

    @contextmanager
    def env(self) -> Iterator[None]:
        saved = {k: os.environ.get(k) for k in self.environment}
        os.environ.update(self.environment)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def invoke(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(self.logical_id, self.memory_mb, self.timeout_s)
        with self._lock:
            handler = self.load()
            if self.shared_env:
                return handler(event, context)
            with self.env():
                return handler(event, context)


def share_environment(functions: dict[str, LocalFunction]) -> dict[str, LocalFunction]:
    """Functions that run at once in one process cannot each swap ``os.environ``: apply the union of
    their environments once and load every handler module under its own (Powertools keeps the service
    name it loaded with). Refuses functions whose settings contradict each other."""
    shared: dict[str, str] = {}
    for fn in functions.values():
        for key, value in fn.environment.items():
            if key not in PER_FUNCTION_ENV and shared.setdefault(key, value) != value:
                raise ValueError(f"the functions set {key} to different values: they cannot share a process")
    os.environ.update(shared)
    shared_functions = {name: replace(fn, shared_env=True) for name, fn in functions.items()}
    for fn in shared_functions.values():
        fn.load()
    return shared_functions


def function_from_template(
    root: Path,
    logical_id: str,
    resource: dict[str, Any],
    environment: dict[str, str],
    globals_: dict[str, Any],
) -> LocalFunction:
    props = resource.get("Properties", {})
    if props.get("PackageType") == "Image":
        meta = resource.get("Metadata", {})
        context_dir = root / meta.get("DockerContext", ".")
        code_dir = (context_dir / meta.get("Dockerfile", "Dockerfile")).parent
        command = props.get("ImageConfig", {}).get("Command") or ["app.lambda_handler"]
        handler = command[0]
    else:
        code_dir = root / str(props["CodeUri"])
        handler = props.get("Handler") or globals_.get("Handler", "app.lambda_handler")
    return LocalFunction(
        logical_id=logical_id,
        code_dir=code_dir.resolve(),
        handler=handler,
        environment=environment,
        memory_mb=int(props.get("MemorySize", globals_.get("MemorySize", 512))),
        timeout_s=int(props.get("Timeout", globals_.get("Timeout", 60))),
    )


def log_environment(logging_config: Mapping[str, Any]) -> dict[str, str]:
    """What Lambda sets from a ``LoggingConfig`` in the JSON format: the format and the application level."""
    if logging_config.get("LogFormat") != "JSON":
        return {}
    return {
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": str(logging_config.get("ApplicationLogLevel", "INFO")),
    }


def template_functions(
    root: Path,
    template: dict[str, Any],
    resolver: Resolver,
    names: list[str],
    env_overrides: Mapping[str, str] | None = None,
) -> dict[str, LocalFunction]:
    """The named zip functions of the template by logical id (their local function names), each with its
    environment (Globals + its own variables) resolved to the local resources."""
    globals_ = template.get("Globals", {}).get("Function", {})
    global_env = resolver.resolve(globals_.get("Environment", {}).get("Variables", {}))
    functions = {}
    for logical, res in resources_of_type(template, "AWS::Serverless::Function").items():
        if logical not in names:
            continue
        own = resolver.resolve(res["Properties"].get("Environment", {}).get("Variables", {}))
        env = {**global_env, **own, **log_environment(res["Properties"].get("LoggingConfig") or {})}
        env = {k: str(v) for k, v in env.items()} | dict(env_overrides or {})
        functions[logical] = function_from_template(root, logical, res, env, globals_)
    return functions


def load_handler_module(path: str | Path | None = None) -> ModuleType:
    """Import ``functions/inference/app.py`` (not a package: it is the image's task root)."""
    path = Path(
        path or os.environ.get("MEDIMAGE_INFERENCE_APP") or project_file("functions/inference/app.py")
    )
    spec = importlib.util.spec_from_file_location("medimage_inference_app", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot import the inference handler from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
