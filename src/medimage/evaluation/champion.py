"""The gate's champion, re-measured: the production model's served file run over a manifest's test split.

Used when production was trained on another manifest version, so challenger and champion are judged on the
same images, through the same scoring as every other evaluation (`medimage.evaluation.scoring`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from medimage.core.manifests import read_csv
from medimage.core.registry import ModelEntry
from medimage.core.test_metrics import TestMetrics
from medimage.evaluation.scoring import score
from medimage.services.gate import GateInputError
from medimage.services.ports import ObjectStore


class LiteRTChampionEvaluator:
    """The `ChampionEvaluator` port, on LiteRT (as serving runs the model)."""

    def __init__(self, store: ObjectStore, workers: int = 8) -> None:
        self.store = store
        self.workers = workers

    def evaluate(self, entry: ModelEntry, manifest_prefix: str, manifest_version: str) -> TestMetrics:
        from medimage.inference.model import TFLiteClassifier

        rows = read_csv(self._required_text(manifest_prefix + "test.csv"))
        if not rows:
            raise GateInputError(f"{manifest_prefix}test.csv lists no images")
        model_dir_key, model_file = entry.model_key.rsplit("/", 1)
        with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
            for name in ("model.json", "labels.txt", model_file):
                data = self.store.get_bytes(f"{model_dir_key}/{name}")
                if data is None:
                    raise GateInputError(f"the production model {entry.version} lacks {model_dir_key}/{name}")
                (Path(tmp) / name).write_bytes(data)
            classifier = TFLiteClassifier.from_dir(tmp, model_file)
        index = {label: i for i, label in enumerate(classifier.labels)}
        unknown = sorted({r["label"] for r in rows} - set(index))
        if unknown:
            raise GateInputError(f"test labels {unknown} are not classes of the production model")

        def image(key: str) -> bytes:
            data = self.store.get_bytes(key)
            if data is None:
                raise GateInputError(f"test image {key} is missing")
            return data

        keys = [r["key"] for r in rows]
        result = score(
            classifier,
            (image(k) for k in keys),
            [index[r["label"]] for r in rows],
            workers=self.workers,
            per_image=True,
        )
        return TestMetrics.from_evaluation(result, manifest_version)

    def _required_text(self, key: str) -> str:
        text = self.store.get_text(key)
        if text is None:
            raise GateInputError(f"{key} does not exist")
        return text
