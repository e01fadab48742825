"""The built-in object-detection algorithm's inference, for the emulator's batch transform jobs.

Runs in the ML tools environment (mxnet)::

    python -m emulator.batch_predict --model model.tar.gz --jobs jobs.json --content-type image/jpeg

``model.tar.gz`` is the training job's artefact (SageMaker's layout); it is turned into the
deploy graph by the model fix, as the algorithm's serving container loads the training graph for
inference. ``jobs.json`` lists ``[input path, output path]`` pairs: each input is one request body
(SplitType None: the whole object is one image), each output gets the algorithm's answer,
``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}`` with corners normalised to
[0, 1] ("Object Detection Request and Response Formats", SageMaker developer guide). The image is
stretched to the model's square input, as the algorithm does.

Prints one line per image; a body that is not an image of the content type ends the run with exit
code 2 and a ``ClientError: 400`` line naming it (the algorithm answers such a request with 400,
which fails the transform job).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ml_tools.preview import Detector, find_deploy_model
from model_fix.fix import fix_model

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}


def load_detector(archive: Path, work: Path) -> Detector:
    """The model in ``archive`` (a training artefact) as a deploy graph bound for one image."""
    fix_model(archive, work / "deploy")
    prefix, shape = find_deploy_model(work / "deploy")
    if shape is None:
        raise ValueError(f"{archive}: hyperparams.json gives no image_shape")
    return Detector(prefix, shape)


def predict(detector: Detector, body: bytes, content_type: str) -> dict[str, list[list[float]]]:
    """The algorithm's answer for one request body of ``content_type``."""
    with Image.open(io.BytesIO(body)) as image:
        if image.format != FORMATS[content_type]:
            raise ValueError(f"the body is {image.format}, not {content_type}")
        rows, _ = detector.detect(image.convert("RGB"))
    return {"prediction": [[float(v) for v in row] for row in rows.tolist()]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--jobs", type=Path, required=True)
    parser.add_argument("--content-type", required=True, choices=sorted(FORMATS))
    args = parser.parse_args(argv)
    pairs = json.loads(args.jobs.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        detector = load_detector(args.model, Path(tmp))
        for source, target in pairs:
            try:
                answer = predict(detector, Path(source).read_bytes(), args.content_type)
            except (OSError, ValueError, Image.DecompressionBombError) as err:
                name = Path(source).name
                print(f"ClientError: 400 {name}: cannot decode the body as {args.content_type}: {err}")
                return 2
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_text(json.dumps(answer))
            print(f"predicted {Path(source).name}: {len(answer['prediction'])} boxes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
