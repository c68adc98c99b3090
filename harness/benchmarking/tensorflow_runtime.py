"""The full-TensorFlow side of the inference benchmark: the same handler, decode and answer, with the model
runtime swapped for TensorFlow serving the trained Keras network (what a full-TensorFlow Lambda ships)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TENSORFLOW_RUNTIME = "tensorflow keras model.keras in a tf.function"


def use_tensorflow(module: Any, model_path: str | Path, dataset: str) -> str:
    """Swap the handler's model runtime for full TensorFlow serving the trained Keras network; the handler
    code, the decode and the answer stay the same."""
    import numpy as np
    import tensorflow as tf

    from medimage.core.preprocess import PreprocessSpec
    from medimage.inference.cache import LocalModelSource, ModelCache, ServingPointer
    from medimage.inference.model import TFLiteClassifier, input_profile_of, read_model_json
    from medimage.inference.review_policy import review_threshold_of
    from medimage.inference.service import InferenceService
    from medimage.inference.settings import InferenceSettings

    model_path = Path(model_path)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras_file = model_path.parent / "model.keras"

    class TensorFlowClassifier:
        classify_array = TFLiteClassifier.classify_array
        to_prediction = TFLiteClassifier.to_prediction
        outside_reason = TFLiteClassifier.outside_reason
        novelty_policy = None  # model.keras has no novelty head: the speed comparison does not need it

        def __init__(self, model_dir: Path, pointer: ServingPointer) -> None:
            self.meta = read_model_json(model_dir)
            self.labels = list(self.meta["labels"])
            self.spec = PreprocessSpec.from_dict(self.meta["preprocess"])
            self.sha256 = pointer.model_sha256
            self.review_threshold = review_threshold_of(self.meta)
            self.input_profile = input_profile_of(self.meta)
            network = tf.keras.models.load_model(keras_file, compile=False)
            shape = (1, self.spec.image_size, self.spec.image_size, self.spec.channels)

            @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
            def serve(x: tf.Tensor) -> Any:
                return network(x, training=False)

            self.serve = serve

        def _probabilities(self, array: np.ndarray) -> np.ndarray:
            outputs = self.serve(tf.constant(array[None, ...], dtype=tf.float32))
            if isinstance(outputs, (list, tuple)):  # the class-activation maps ride along as a second output
                outputs = next(o for o in outputs if len(o.shape) == 2)
            return np.asarray(outputs)[0]

        def run(self, array: np.ndarray, explain: bool = False) -> tuple[np.ndarray, None]:
            return self._probabilities(array), None

        def run_scored(self, array: np.ndarray, explain: bool = False) -> tuple[np.ndarray, None, None]:
            return self._probabilities(array), None, None

    config = InferenceSettings.from_env()
    service = InferenceService(
        ModelCache(LocalModelSource(model_path, dataset), 3600, loader=TensorFlowClassifier),  # type: ignore[arg-type]
        config,
    )
    module.service = lambda: service
    return TENSORFLOW_RUNTIME
