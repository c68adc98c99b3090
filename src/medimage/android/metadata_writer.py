"""Write the Android model's TFLite metadata with tflite-support's image classifier metadata writer.

Runs in its own virtual environment (``.venv-tflite``: tflite-support pins protobuf < 4 and needs
numpy < 2), as a script: ``python metadata_writer.py REQUEST.json``. It imports nothing of medimage, only
the standard library and ``tflite_support``. The request names the model without metadata, the labels
file, the output path and the texts (``medimage.android.package`` builds it); the script writes the model
with metadata and prints ``{"metadata": <MetadataDisplayer JSON>, "associated_files": [...],
"tflite_support": <version>}`` on stdout. A failure exits 1 with one line on stderr.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata as distributions
from pathlib import Path
from typing import Any


def _input_md(request: dict[str, Any], tensor_type: Any) -> Any:
    """The image input: RGB, normalisation mean/std, and the image size as ``ImageProperties.default_size``
    (the writer sets the colour space only; the size is the input tensor's, written for readers that look
    at the metadata alone)."""
    from tflite_support import metadata_schema_py_generated as _metadata_fb
    from tflite_support.metadata_writers import metadata_info

    spec = request["input"]

    class SizedImageTensorMd(metadata_info.InputImageTensorMd):  # type: ignore[misc]
        def create_metadata(self) -> Any:
            tensor = super().create_metadata()
            size = _metadata_fb.ImageSizeT()
            size.width, size.height = int(spec["width"]), int(spec["height"])
            tensor.content.contentProperties.defaultSize = size
            return tensor

    return SizedImageTensorMd(
        name=spec["name"],
        description=spec["description"],
        norm_mean=[float(v) for v in spec["mean"]],
        norm_std=[float(v) for v in spec["std"]],
        color_space_type=_metadata_fb.ColorSpaceType.RGB,
        tensor_type=tensor_type,
    )


def write(request: dict[str, Any]) -> dict[str, Any]:
    from tflite_support import metadata
    from tflite_support.metadata_writers import image_classifier, metadata_info, writer_utils

    model_buffer = writer_utils.load_file(request["model"])
    general = metadata_info.GeneralMd(
        name=request["name"],
        version=request["version"],
        description=request["description"],
        author=request["author"],
        licenses=request["license"],
    )
    output = request["output"]
    output_md = metadata_info.ClassificationTensorMd(
        name=output["name"],
        description=output["description"],
        label_files=[metadata_info.LabelFileMd(file_path=request["labels"])],
        tensor_type=writer_utils.get_output_tensor_types(model_buffer)[0],
    )
    input_md = _input_md(request, writer_utils.get_input_tensor_types(model_buffer)[0])
    writer = image_classifier.MetadataWriter.create_from_metadata_info(
        model_buffer, general_md=general, input_md=input_md, output_md=output_md
    )
    populated = writer.populate()
    Path(request["out"]).write_bytes(populated)
    displayer = metadata.MetadataDisplayer.with_model_buffer(populated)
    return {
        "metadata": json.loads(displayer.get_metadata_json()),
        "associated_files": displayer.get_packed_associated_file_list(),
        "tflite_support": distributions.version("tflite-support"),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: metadata_writer.py REQUEST.json", file=sys.stderr)
        return 2
    try:
        request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        result = write(request)
    except Exception as exc:  # one line for the caller, whatever the library raised
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
