"""statemachine/bulk_import.asl.json: a Distributed Map with an ItemBatcher, bounded by the template's
parameters, its failures tolerated and written; linted as `make lint` lints it; and what the local stack
runs of it differs only where moto's grammar falls short."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from template_model import REPO

from medimage.local.moto_map import (
    LOCAL_INVENTORY_CAUSE,
    LocalBatchingError,
    local_batch_sizes,
    local_definition,
)

pytestmark = pytest.mark.xdist_group("template")

ASL = REPO / "statemachine" / "bulk_import.asl.json"
LINT = REPO / "scripts" / "statelint_asl.py"


def definition() -> dict:
    return json.loads(ASL.read_text(encoding="utf-8"))


def test_every_definition_passes_the_lint_make_runs():
    files = sorted(str(p) for p in (REPO / "statemachine").glob("*.asl.json"))
    proc = subprocess.run([sys.executable, str(LINT), *files], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "statelint_asl.py statemachine/*.asl.json" in (REPO / "Makefile").read_text(encoding="utf-8")


def test_the_lint_still_fails_other_problems(tmp_path):
    broken = definition()
    broken["States"]["CopyFromInventory"]["ItemReader"]["ReaderConfig"]["InputType"] = "XLSX"
    broken["States"]["Finish"]["Next"] = "Nowhere"
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(LINT), str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "InputType" in proc.stdout and "Nowhere" in proc.stdout


@pytest.mark.parametrize("state", ["CopyFromListing", "CopyFromInventory"])
def test_each_copy_is_a_bounded_distributed_map_in_batches(state):
    spec = definition()["States"][state]
    assert spec["Type"] == "Map"
    assert spec["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert spec["ItemBatcher"]["MaxItemsPerBatchPath"] == "$.request.batch_size"
    assert spec["ItemSelector"] == {"key.$": "$$.Map.Item.Value.Key"}
    assert spec["MaxConcurrencyPath"] == "$.request.max_concurrency"
    assert spec["ToleratedFailurePercentagePath"] == "$.request.tolerated_failure_percent"
    assert spec["ResultWriter"]["Parameters"] == {"Bucket": "${DataBucket}", "Prefix": "imports/map-runs"}
    assert spec["Catch"][0]["Next"] == "Finish" and spec["Next"] == "Finish"
    (task,) = spec["ItemProcessor"]["States"].values()
    assert task["Parameters"]["Payload"]["action"] == "copy"


def test_the_readers_list_the_prefix_or_read_an_inventory():
    states = definition()["States"]
    assert states["CopyFromListing"]["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    inventory = states["CopyFromInventory"]["ItemReader"]
    assert (inventory["Resource"], inventory["ReaderConfig"]) == (
        "arn:aws:states:::s3:getObject",
        {"InputType": "MANIFEST"},
    )


def test_the_template_bounds_the_map_and_the_caller_cannot_raise_them(raw_template):
    settings = definition()["States"]["Check"]["Parameters"]["Payload"]["settings"]
    assert settings == {
        "import_id.$": "$$.Execution.Name",
        "max_concurrency": "${MaxConcurrency}",
        "batch_size": "${BatchSize}",
        "tolerated_failure_percent": "${ToleratedFailurePercent}",
    }
    subs = raw_template["Resources"]["BulkImportStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert subs["MaxConcurrency"] == {"Ref": "BulkImportMaxConcurrency"}
    assert subs["BatchSize"] == {"Ref": "BulkImportBatchSize"}
    batch_size = raw_template["Parameters"]["BulkImportBatchSize"]
    assert (batch_size["Default"], batch_size["MinValue"], batch_size["MaxValue"]) == (200, 1, 1000)
    assert subs["ToleratedFailurePercent"] == {"Ref": "BulkImportToleratedFailurePercent"}


def test_the_local_definition_keeps_the_batch_size_aside_and_changes_nothing_else():
    deployed = definition()
    local = json.loads(local_definition(json.dumps(deployed), "stack-BulkImportStateMachine"))
    listing = local["States"]["CopyFromListing"]
    assert "ItemBatcher" not in listing
    assert listing["ItemSelector"] == {
        "Items": [{"key.$": "$$.Map.Item.Value.Key"}],
        "BatchInput": {"request.$": "$.request"},
    }
    sizes = local_batch_sizes()
    assert sizes[("stack-BulkImportStateMachine", "CopyFromListing")] == "$.request.batch_size"
    assert ("stack-BulkImportStateMachine", "CopyFromInventory") not in sizes
    assert local["States"]["CopyFromInventory"] == {
        "Type": "Fail",
        "Error": "BulkImportProblem",
        "Cause": LOCAL_INVENTORY_CAUSE,
    }
    expected = copy.deepcopy(deployed)
    for name in ("CopyFromListing", "CopyFromInventory"):
        expected["States"][name] = local["States"][name]
    assert local == expected
    expected_listing = {k: v for k, v in deployed["States"]["CopyFromListing"].items() if k != "ItemBatcher"}
    assert {k: v for k, v in listing.items() if k != "ItemSelector"} == {
        k: v for k, v in expected_listing.items() if k != "ItemSelector"
    }


def test_a_batcher_the_local_stack_cannot_reproduce_is_refused_by_name():
    by_bytes = definition()
    by_bytes["States"]["CopyFromListing"]["ItemBatcher"] = {"MaxInputBytesPerBatch": 262144}
    with pytest.raises(LocalBatchingError, match=r"CopyFromListing.*MaxItemsPerBatchPath only"):
        local_definition(json.dumps(by_bytes), "stack-BulkImportStateMachine")
    both = definition()
    both["States"]["CopyFromListing"]["ItemBatcher"]["MaxItemsPerBatch"] = 7
    with pytest.raises(LocalBatchingError, match=r"CopyFromListing.*MaxItemsPerBatchPath only"):
        local_definition(json.dumps(both), "stack-BulkImportStateMachine")


def test_the_training_definition_runs_locally_as_deployed():
    text = (REPO / "statemachine" / "training.asl.json").read_text(encoding="utf-8")
    assert json.loads(local_definition(text, "stack-StateMachine")) == json.loads(text)
