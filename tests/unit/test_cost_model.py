"""The cost model of a million images: per-image counts times list prices, per stage and service."""

from __future__ import annotations

import pytest

from harness.benchmarking.costs import Prices, drop_to_label, function_memory, import_and_train

MEMORY = {"annotate": 1024, "split": 1024, "inference": 1024}


def test_the_total_is_the_sum_of_the_stages() -> None:
    bill = import_and_train(1_000_000, MEMORY, split_s_per_million=30.0)
    stages = {name: figures for name, figures in bill.items() if name != "total"}
    for service, amount in bill["total"].items():
        if service != "all":
            assert amount == pytest.approx(sum(s.get(service, 0.0) for s in stages.values()), abs=0.02)
    services = sum(v for k, v in bill["total"].items() if k != "all")
    assert bill["total"]["all"] == pytest.approx(services, abs=0.02)


def test_annotate_pays_one_write_unit_and_one_get_per_image() -> None:
    prices = Prices()
    bill = import_and_train(1_000_000, MEMORY, prices, split_s_per_million=30.0)
    assert bill["annotate"]["dynamodb"] == pytest.approx(1_000_000 * prices.dynamodb_write_unit, abs=0.01)
    assert bill["annotate"]["s3"] == pytest.approx(1_000_000 * prices.s3_read_request, abs=0.01)


def test_costs_follow_the_number_of_images_and_the_memory() -> None:
    small = drop_to_label(100_000, MEMORY)["total"]
    large = drop_to_label(1_000_000, MEMORY)["total"]
    assert large["s3"] == pytest.approx(10 * small["s3"], rel=0.01)
    doubled = drop_to_label(1_000_000, {**MEMORY, "inference": 2048})["total"]
    assert doubled["lambda"] > 1.5 * large["lambda"]


def test_a_slower_split_costs_more_lambda() -> None:
    quick = import_and_train(1_000_000, MEMORY, split_s_per_million=30.0)["split"]["lambda"]
    slow = import_and_train(1_000_000, MEMORY, split_s_per_million=3000.0)["split"]["lambda"]
    assert slow > quick


def test_function_memory_reads_the_template_and_its_globals() -> None:
    template = {
        "Globals": {"Function": {"MemorySize": 512}},
        "Resources": {
            "AnnotateFunction": {"Type": "AWS::Serverless::Function", "Properties": {"MemorySize": 1024}},
            "BulkCopyFunction": {"Type": "AWS::Serverless::Function", "Properties": {}},
            "DataBucket": {"Type": "AWS::S3::Bucket"},
        },
    }
    assert function_memory(template) == {"annotate": 1024, "bulk_copy": 512}
