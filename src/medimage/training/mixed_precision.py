"""Which layers of the int8 model stay float: the fewest that keep it answering like the float network.

Post-training quantisation of the fine-tuned MobileNetV2 cost 3.7 points of validation accuracy, and
not evenly: a handful of layers (projections whose outputs are wide and centred, the first depthwise)
carry most of the rounding error. The converter's quantisation debugger measures each layer's error on
the calibration's training images in units of that layer's own quantisation step; the worst few are kept
in float, as few as reach `AGREEMENT_TARGET` top-1 agreement with the Keras network on training images
calibration did not see, clean and under the acquisition shifts. Validation, which later decides int8
parity, plays no part in the choice. Measured: docs/experiments.md.
"""

from __future__ import annotations

import contextlib
import csv
import io
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medimage.core.novelty import ClassGaussians
from medimage.training import export

# Every disagreement with the float network may be an error, so the agreement the search asks for is at least
# one minus the accuracy the int8 parity rule lets int8 lose (0.5 point, `package.INT8_PARITY`): at 0.99 a
# run stopped at 8 float layers and lost 0.87 points of validation accuracy (docs/experiments.md).
AGREEMENT_TARGET = 0.995
LADDER = (0, 4, 8, 12, 16, 24)  # layers kept float, tried in turn (each a re-quantisation, no calibration)
AGREEMENT_IMAGES = 64  # unseen training images; each also under the 14 acquisition shifts (960 in all)
MIN_UNSEEN_IMAGES = 50  # fewer unseen training images than this: agreement is checked on the calibration's


@dataclass(frozen=True)
class MixedPrecision:
    """An int8 model and the layers it keeps float, with the agreement that chose them."""

    content: bytes
    float_layers: tuple[str, ...]
    agreement: float
    tried: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "float_layers": [layer_label(name) for name in self.float_layers],
            "training_agreement": round(self.agreement, 6),
            "agreement_target": AGREEMENT_TARGET,
            "tried": {str(k): round(v, 6) for k, v in self.tried.items()},
            "seconds": self.seconds,
        }


def layer_label(tensor_name: str) -> str:
    """The Keras layer behind a converter tensor name (``net_1/block_13_project_BN_1/add;...`` ->
    ``block_13_project_BN``), for people reading ``model.json``."""
    first = tensor_name.split(";")[0]
    parts = first.split("/")
    label = parts[1] if len(parts) > 1 else parts[0]
    return label.removesuffix("_1")


def ranked_layers(debugger: Any) -> list[str]:
    """Quantised tensors, the largest root-mean-square rounding error per quantisation step first
    (``debugger.run()`` done)."""
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row.get("scale") or 0.0)
        if scale > 0:
            rows.append((float(row["mean_squared_error"]) ** 0.5 / scale, row["tensor_name"]))
    return [name for _, name in sorted(rows, key=lambda item: -item[0])]


def top1_agreement(content: bytes, images: np.ndarray, reference: np.ndarray, interpreter: Any) -> float:
    """Share of images whose int8 top class (the ``[1, C]`` output) is the reference's."""
    runner = interpreter(model_content=content)
    runner.allocate_tensors()
    entry = runner.get_input_details()[0]["index"]
    classes = reference.shape[1]
    exit_ = next(d["index"] for d in runner.get_output_details() if list(d["shape"]) == [1, classes])
    same = 0
    for image, expected in zip(images.astype(np.float32), reference.argmax(axis=1), strict=True):
        runner.set_tensor(entry, image[None, ...])
        runner.invoke()
        same += int(runner.get_tensor(exit_)[0].argmax() == expected)
    return same / len(images)


def agreement_images(images: np.ndarray) -> np.ndarray:
    """The images, and each under every acquisition shift: int8 parity is judged under the shifts too,
    and rounding that a clean image survives can flip a darker, flatter or noisier one."""
    from medimage.evaluation.shifts import SHIFTS, shifted_array

    shifted = [np.stack([shifted_array(image, shift) for image in images]) for shift in SHIFTS]
    return np.concatenate([images, *shifted]).astype(np.float32)


def quantize_mixed(
    model: Any,
    calibration: np.ndarray,
    samples: int,
    seed: int,
    interpreter: Any,
    novelty: ClassGaussians | None = None,
    target: float = AGREEMENT_TARGET,
    ladder: tuple[int, ...] = LADDER,
) -> MixedPrecision:
    """The int8 model with the fewest float layers on ``ladder`` that agrees with Keras on ``target`` of
    the unseen training images; where none does, the one that agrees most. The layers are ranked (one
    pass of the debugger over the calibration images) only when the all-int8 model falls short."""
    started = time.monotonic()
    chosen, unseen = export.calibration_order(len(calibration), samples, seed)
    held = unseen[:AGREEMENT_IMAGES] if len(unseen) >= MIN_UNSEEN_IMAGES else chosen[:AGREEMENT_IMAGES]
    images = agreement_images(calibration[np.sort(held)].astype(np.float32))
    reference = export.logits_model(model).predict(images, batch_size=64, verbose=0)

    debugger = export.int8_debugger(model, calibration, samples, seed, novelty=novelty)
    content = export.quantised_model(debugger)
    tried = {0: top1_agreement(content, images, reference, interpreter)}
    best = MixedPrecision(content, (), tried[0])
    if tried[0] < target:
        with contextlib.redirect_stdout(io.StringIO()):
            debugger.run()
        # The debugger's graph quantises a few tensors the served one keeps float (its outputs): only
        # the layers quantised in the served graph are candidates.
        quantised = export.tensor_names(content)[1]
        ranked = [name for name in ranked_layers(debugger) if name in quantised]
        for count in sorted({min(rung, len(ranked)) for rung in ladder} - {0}):
            layers = tuple(ranked[:count])
            content = export.quantised_model(debugger, layers)
            tried[count] = top1_agreement(content, images, reference, interpreter)
            if tried[count] > best.agreement:
                best = MixedPrecision(content, layers, tried[count])
            if tried[count] >= target:
                break
    return MixedPrecision(
        best.content, best.float_layers, best.agreement, tried, round(time.monotonic() - started, 1)
    )
