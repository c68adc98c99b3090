"""The fault benchmark's run (``harness.benchmarking.fault_run``) on a few generated X-rays: under the
faults and every race it ends with nothing lost, nothing recorded twice and a valid production model,
and its figures add up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.benchmarking.fault_run import shortfalls
from harness.benchmarking.fault_uploads import load_images
from medimage.core.presets import get_preset
from medimage.local.synthetic import generate, write_tree

pytestmark = pytest.mark.xdist_group("faults-bench")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Spread over enough patients that the patient-grouped split gives the first commit test images.
    files = generate(get_preset("chestxray2017-binary"), per_class=30, size=64, seed=8)
    return write_tree(tmp_path_factory.mktemp("xrays"), files)


def test_load_images_spreads_over_the_label_folders(image_dir):
    images = load_images(image_dir, 9)
    folders = [u.key.rsplit("/", 2)[-2] for u in images]
    assert len(images) == len({u.key for u in images}) == 9
    assert folders[:4] == ["NORMAL", "PNEUMONIA", "NORMAL", "PNEUMONIA"]
    assert sorted(set(folders)) == ["NORMAL", "PNEUMONIA"]
    with pytest.raises(ValueError, match="wanted"):
        load_images(image_dir, 100)


def test_the_benchmark_under_faults_and_races_loses_nothing_and_keeps_production_valid(image_dir):
    # GIVEN 24 generated X-rays (4 kept for two late commits), 5 of the others again under new keys, 4
    # broken files, faults at 15% of the calls
    command = [sys.executable, "benchmarks/fault_bench.py", "--images", str(image_dir), "--count", "24"]
    command += ["--rate", "0.15", "--seed", "4", "--min-faults", "20"]
    # WHEN the benchmark runs them on the local stack of `medimage up`
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    # THEN one JSON object on stdout (the handlers' log lines went to stderr), and every guarantee holds
    result = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr[-3000:]
    assert result["problems"] == []
    assert (result["lost"], result["duplicate_records"]) == (0, 0)
    assert result["objects"] == 24 + 5 + 4
    assert (result["accepted"], result["quarantined"]) == (29, 4)
    assert result["production_valid"] is True and result["stack"] == "up"
    # three commits (the two at once count as one) and the re-run that raced the rollback
    assert result["executions"] == 4 and result["manifest_versions"] == 3
    assert all(n == 1 for n in result["executions_per_version"].values())
    assert result["faults_injected"] >= 20 and result["fault_rate"] >= 0.1
    assert result["faults_by_kind"]["crash"] == 5
    assert sum(result["faults_by_service"].values()) == result["faults_injected"]
    assert result["retries"] > 0
    races = result["races"]
    assert races["same_object_three_times_out_of_order"]["deliveries"] == 3 * 10
    assert races["uploaders_at_once"]["failed"] == {}
    assert len(races["two_commits_at_once"]["manifest_versions"]) == 1
    assert races["two_executions_finishing_at_once"]["promotions_held_together"]
    assert races["rollback_during_promotion"]["rollback"].startswith("to ")


def test_a_run_falls_short_on_a_loss_a_duplicate_an_invalid_production_or_too_few_faults():
    good = {
        "problems": [],
        "lost": 0,
        "duplicate_records": 0,
        "production_valid": True,
        "faults_injected": 100,
    }
    assert shortfalls(good, 100) == []
    assert shortfalls({**good, "lost": 1}, 100) == ["1 objects lost"]
    assert shortfalls({**good, "duplicate_records": 2}, 100) == ["2 duplicate records"]
    assert shortfalls({**good, "production_valid": False}, 100) == [
        "production.json does not name a valid model"
    ]
    assert shortfalls(good, 101) == ["100 faults injected, fewer than 101"]
    assert shortfalls({**good, "problems": ["latest.json names x"]}, 100) == ["latest.json names x"]
