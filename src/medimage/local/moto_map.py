"""A Distributed Map in moto 5.2.x's Step Functions interpreter, run as Step Functions runs it.

The bulk-import definition deploys unchanged; locally it runs as ``local_definition`` leaves it, with the
two places where moto's grammar falls short rewritten and nothing else:

- ``ItemBatcher`` is not in moto's grammar. The rewrite drops it and makes the ItemSelector build a batch
  of one (``{"Items": [<the item>], "BatchInput": <the batcher's BatchInput>}``); ``batch_map_items``
  then gives each child execution ``MaxItemsPerBatch`` items, as Step Functions does: the ItemSelector
  is applied to each item, the selected items are joined under ``Items``, with the ``BatchInput``. The
  batch sizes travel from the rewrite to the interpreter by state machine and Map state name
  (``local_batch_sizes``): ``local_definition`` is given the name the state machine is created with.
- An ItemReader over an S3 inventory (``ReaderConfig.InputType: MANIFEST``) is refused by moto's parser:
  that Map state becomes a Fail state that says so (listing a prefix runs as deployed).

And three patches of moto internals (each at the narrowest point, inside an active ``mock_aws``):

1. ``paginated_item_reader`` (``item_reader.eval.resource_eval_s3.ResourceEvalS3._handle_list_objects_v2``):
   a Distributed Map's ``s3:listObjectsV2`` ItemReader reads only moto's first page (1,000 keys) and fails
   on an empty prefix; Step Functions reads every page.
2. ``batch_map_items`` (``DistributedIterationComponent._map_run`` and
   ``DistributedItemProcessorWorker._eval_input``): the batching above. The Map run's item counts stay
   counts of items (a failed batch fails all of its items), as Step Functions reports them.
3. ``tolerate_map_failures`` (``DistributedIterationComponent._map_run``): moto ignores a Distributed Map's
   ToleratedFailurePercentage and drops a failed child's items without failing the Map; Step Functions fails
   the Map with ``States.ExceedToleratedFailureThreshold`` when more items failed than it tolerates.
4. ``write_failed_results`` (``DistributedItemProcessorWorker._eval_job`` and ``_eval_input``, the
   ResultWriter's ``ResourceEvalS3._handle_put_object``): moto's ResultWriter writes a ``manifest.json``
   with no result files. Step Functions also writes the failed child executions (their input, error and
   cause) to ``FAILED_0.json`` beside it, listed under ``ResultFiles.FAILED``: the patch writes that file
   (not the SUCCEEDED ones, which nothing here reads), so a batch that failed outright is not lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from medimage.local.moto_pin import check_moto_version

LOCAL_INVENTORY_CAUSE = (
    "the local stack (moto) does not read S3 inventory manifests: import a prefix (source_prefix) instead"
)

# (state machine name, Map state name) -> MaxItemsPerBatch (a number, or the JSONPath into the Map's input
# that gives it) of the definitions ``local_definition`` rewrote in this process; the last one wins.
_BATCH_SIZES: dict[tuple[str, str], int | str] = {}


class LocalBatchingError(ValueError):
    """An ItemBatcher the local stack cannot reproduce faithfully."""


class _Batch(list):  # type: ignore[type-arg]
    """The raw items of one ItemBatcher batch: the input of one child execution."""


def local_batch_sizes() -> dict[tuple[str, str], int | str]:
    """(state machine, Map state) -> MaxItemsPerBatch or its path, for the definitions rewritten so far."""
    return dict(_BATCH_SIZES)


def _batch_size(name: str, batcher: dict[str, Any]) -> int | str:
    given = [k for k in ("MaxItemsPerBatch", "MaxItemsPerBatchPath") if k in batcher]
    size = batcher.get(given[0]) if len(given) == 1 else None
    others = sorted(set(batcher) - {"MaxItemsPerBatch", "MaxItemsPerBatchPath", "BatchInput"})
    fixed = isinstance(size, int) and not isinstance(size, bool) and size >= 1
    by_path = isinstance(size, str) and size.startswith("$")
    if others or not (fixed or by_path):
        raise LocalBatchingError(
            f"Map state {name}: the local stack batches by MaxItemsPerBatch or MaxItemsPerBatchPath only "
            f"(the ItemBatcher has {sorted(batcher)})"
        )
    assert isinstance(size, int | str)
    return size


def _local_map(state_machine: str, name: str, state: dict[str, Any]) -> dict[str, Any]:
    reader_config = (state.get("ItemReader") or {}).get("ReaderConfig") or {}
    if reader_config.get("InputType") == "MANIFEST":
        return {"Type": "Fail", "Error": "BulkImportProblem", "Cause": LOCAL_INVENTORY_CAUSE}
    batcher = state.get("ItemBatcher")
    if batcher is None:
        return state
    _BATCH_SIZES[(state_machine, name)] = _batch_size(name, batcher)
    local = {k: v for k, v in state.items() if k != "ItemBatcher"}
    item = state.get("ItemSelector", {"value.$": "$$.Map.Item.Value"})
    local["ItemSelector"] = {"Items": [item], "BatchInput": batcher.get("BatchInput", {})}
    return local


def local_definition(definition: str, state_machine: str) -> str:
    """The definition moto's interpreter can run as ``state_machine`` (module docstring): unchanged
    without a Map state."""
    parsed = json.loads(definition)

    def visit(states: dict[str, Any]) -> None:
        for name, state in states.items():
            if state.get("Type") == "Map":
                states[name] = _local_map(state_machine, name, state)
                inner = states[name].get("ItemProcessor") or states[name].get("Iterator") or {}
                visit(inner.get("States", {}))
            for branch in state.get("Branches", []):
                visit(branch.get("States", {}))

    visit(parsed.get("States", {}))
    return json.dumps(parsed)


@contextmanager
def paginated_item_reader() -> Iterator[None]:
    """A Map's ``s3:listObjectsV2`` ItemReader reads every page (an empty listing is no items)."""
    check_moto_version()
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval import (
        resource_eval_s3,
    )

    cls = resource_eval_s3.ResourceEvalS3
    original = cls.__dict__["_handle_list_objects_v2"]

    def list_all(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
        s3_client = cls._get_s3_client(
            resource_runtime_part=resource_runtime_part, state_credentials=state_credentials
        )
        parameters = dict(env.stack.pop())
        contents: list[dict[str, Any]] = []
        while True:
            response = s3_client.list_objects_v2(**parameters)
            contents.extend(response.get("Contents", []))
            token = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not token:
                break
            parameters["ContinuationToken"] = token
        env.stack.append(contents)

    cls._handle_list_objects_v2 = staticmethod(list_all)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        cls._handle_list_objects_v2 = original  # type: ignore[method-assign]


def _items_per_batch(declared: int | str, map_input: Any) -> int:
    if isinstance(declared, int):
        return declared
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    value = extract_json(declared, map_input)
    try:
        size = 0 if isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1:
        raise LocalBatchingError(f"MaxItemsPerBatchPath {declared} gave {value!r}, not a positive integer")
    return size


@contextmanager
def batch_map_items() -> Iterator[None]:
    """Each child execution of a batched Map gets its batch: ``{"Items": [...], "BatchInput": ...}``."""
    check_moto_version()
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as component,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker,
    )
    from moto.stepfunctions.parser.asl.eval.states import ItemData, MapData

    cls = component.DistributedIterationComponent
    original_map_run = cls._map_run
    worker_cls = worker.DistributedItemProcessorWorker
    original_eval_input = worker_cls._eval_input

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        machine = env.states.context_object.context_object_data["StateMachine"]["Name"]
        declared = _BATCH_SIZES.get((machine, eval_input.state_name))
        if declared is None:
            original_map_run(self, env, eval_input)
            return
        items = env.stack.pop()
        # Under the items lies the Map state's input, which a MaxItemsPerBatchPath reads.
        size = _items_per_batch(declared, env.stack[-1] if env.stack else {})
        batches = [_Batch(items[i : i + size]) for i in range(0, len(items), size)]
        env.stack.append(batches)
        original_map_run(self, env, eval_input)
        # moto counted each batch as one item; Step Functions counts items (a failed batch fails them all).
        outputs = env.stack[-1]
        failed = [b for b, out in zip(batches, outputs, strict=True) if out is None]
        counter = eval_input.map_run_record.item_counter
        counter.total.offset(len(items) - len(batches))
        counter.failed.offset(sum(map(len, failed)) - len(failed))
        counter.succeeded.offset(len(items) - sum(map(len, failed)) - (len(batches) - len(failed)))

    def eval_input(self: Any, env_frame: Any) -> None:
        context = env_frame.states.context_object.context_object_data
        batch = context["Map"]["Item"]["Value"]
        if not isinstance(batch, _Batch):
            original_eval_input(self, env_frame)
            return
        index = context["Map"]["Item"]["Index"]
        depth = len(env_frame.stack)
        selected: list[Any] = []
        batch_input: Any = {}
        for value in batch:
            context["Map"] = MapData(Item=ItemData(Index=index, Value=value))
            original_eval_input(self, env_frame)
            one = env_frame.stack[-1]
            del env_frame.stack[depth:]
            selected.extend(one.get("Items", []))
            batch_input = one.get("BatchInput", {})
        context["Map"] = MapData(Item=ItemData(Index=index, Value=list(batch)))
        joined = {"Items": selected, "BatchInput": batch_input}
        env_frame.stack.append(joined)
        env_frame.states.reset(input_value=joined)

    cls._map_run = map_run  # type: ignore[method-assign]
    worker_cls._eval_input = eval_input  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls._map_run = original_map_run  # type: ignore[method-assign]
        worker_cls._eval_input = original_eval_input  # type: ignore[method-assign]


@contextmanager
def write_failed_results() -> Iterator[None]:
    """A Distributed Map's ResultWriter lists its failed child executions in ``FAILED_0.json``."""
    check_moto_version()
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import (
        resource_eval_s3,
    )
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramError

    worker_cls = worker.DistributedItemProcessorWorker
    original_eval_input, original_eval_job = worker_cls._eval_input, worker_cls._eval_job
    writer_cls = resource_eval_s3.ResourceEvalS3
    original_put = writer_cls.__dict__["_handle_put_object"]

    def eval_input(self: Any, env_frame: Any) -> None:
        original_eval_input(self, env_frame)
        self.medimage_child_input = env_frame.states.get_input()  # one job at a time per worker

    def eval_job(self: Any, env: Any, job: Any) -> None:
        self.medimage_child_input = job.job_input
        original_eval_job(self, env, job)
        state = env.program_state()
        if job.job_output is None and isinstance(state, ProgramError):
            failed = self._map_run_record.__dict__.setdefault("medimage_failed", [])
            failed.append(
                {
                    "Input": json.dumps(self.medimage_child_input),
                    "InputDetails": {"Included": True},
                    "Status": "FAILED",
                    "Error": str(state.error.get("error") or ""),
                    "Cause": str(state.error.get("cause") or ""),
                }
            )

    def put_object(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
        record = env.map_run_record_pool_manager.get_all()[-1]
        original_put(env, resource_runtime_part, state_credentials)
        failed = record.__dict__.get("medimage_failed") or []
        details = env.stack[-1]["ResultWriterDetails"]
        if not failed:
            return
        s3 = writer_cls._get_s3_client(
            resource_runtime_part=resource_runtime_part, state_credentials=state_credentials
        )
        bucket, key = details["Bucket"], details["Key"]
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        body = json.dumps(failed).encode()
        failed_key = key.rsplit("/", 1)[0] + "/FAILED_0.json"
        s3.put_object(Bucket=bucket, Key=failed_key, Body=body)
        manifest["ResultFiles"]["FAILED"] = [{"Key": failed_key, "Size": len(body)}]
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest, indent=2).encode())

    worker_cls._eval_input = eval_input  # type: ignore[method-assign]
    worker_cls._eval_job = eval_job  # type: ignore[method-assign]
    writer_cls._handle_put_object = staticmethod(put_object)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        worker_cls._eval_input = original_eval_input  # type: ignore[method-assign]
        worker_cls._eval_job = original_eval_job  # type: ignore[method-assign]
        writer_cls._handle_put_object = original_put  # type: ignore[method-assign]


@contextmanager
def tolerate_map_failures() -> Iterator[None]:
    """A Distributed Map fails when more items failed than its ToleratedFailurePercentage allows."""
    check_moto_version()
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as component,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    cls = component.DistributedIterationComponent
    original = cls._map_run

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        original(self, env, eval_input)
        counter = eval_input.map_run_record.item_counter
        failed, total = counter.failed.get(), counter.total.get()
        percent = float(eval_input.tolerated_failure_percentage or 0)
        if failed == 0 or failed <= total * percent / 100:
            return
        env.stack.pop()  # the outputs of the items that succeeded
        error = StatesErrorNameType.StatesExceedToleratedFailureThreshold
        cause = f"{failed} of {total} items failed; the Map tolerates {percent:g} %"
        raise FailureEventException(
            FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=error),
                event_type=HistoryEventType.MapRunFailed,
                event_details=EventDetails(
                    mapRunFailedEventDetails=MapRunFailedEventDetails(error=error.to_name(), cause=cause)
                ),
            )
        )

    cls._map_run = map_run  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls._map_run = original  # type: ignore[method-assign]
