"""Frames per second of the unmodified inference function on the simulated DeepLens (not a test).

    .venv-ml/bin/python scripts/bench_device.py [--seconds 20] [--image-shape 300] [--networks tiny resnet-50]

For each base network: the trainer's ``--mode fast`` builds the real SSD training graph with its
initial (untrained, random) weights, ``model_fix`` repacks it as the pipeline does, and the
function (``include/lambda/deeplens_inference.py``) runs on the device's ``python3.7`` with the
``awscam``/``mo`` stand-ins, the camera serving 1920x1080 frames (sample photos scaled to the
DeepLens camera's size). Counted: detection messages published per second once the model is
loaded (publishes go to the test-only ``greengrasssdk`` double, a file append; real IPC/MQTT
costs are not included). Untrained weights cost the same per frame as trained ones, except for
non-maximum suppression, which has more boxes to sort when the scores are random.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include")]

import cv2  # noqa: E402

from deeplens_device.launcher import write_device_python  # noqa: E402
from deeplens_device.simulated import function_environment, install_model, start_function  # noqa: E402
from emulator.sample_dataset import generate_sample_dataset  # noqa: E402
from ml_tools.sample_manifests import write_sample_manifests  # noqa: E402
from model_fix import FixOptions, repack_model_archive  # noqa: E402

DOUBLES = ROOT / "tests" / "deeplens_device" / "doubles"
CAMERA_SIZE = (1920, 1080)
CLASSES = ("blue_box", "yellow_box")


def camera_frames(root: Path, count: int = 8) -> Path:
    """Sample photos scaled (and padded) to the DeepLens camera's 1920x1080, as JPEGs."""
    dataset = generate_sample_dataset(root / "dataset", n_images=count, seed=7)
    out = root / "camera"
    out.mkdir()
    for path in sorted((dataset / "images").iterdir()):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        scale = min(CAMERA_SIZE[0] / image.shape[1], CAMERA_SIZE[1] / image.shape[0])
        resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        canvas = cv2.copyMakeBorder(
            resized,
            (CAMERA_SIZE[1] - resized.shape[0]) // 2,
            CAMERA_SIZE[1] - resized.shape[0] - (CAMERA_SIZE[1] - resized.shape[0]) // 2,
            (CAMERA_SIZE[0] - resized.shape[1]) // 2,
            CAMERA_SIZE[0] - resized.shape[1] - (CAMERA_SIZE[0] - resized.shape[1]) // 2,
            cv2.BORDER_CONSTANT,
        )
        cv2.imwrite(str(out / f"{path.stem}.jpg"), canvas)
    return out


def build_model(root: Path, network: str, image_shape: int) -> tuple[Path, str]:
    """(repacked archive, deploy model name) of an untrained ``network`` SSD from the trainer."""
    dataset = generate_sample_dataset(root / "train-data", n_images=4, seed=1)
    train, validation, classes = write_sample_manifests(dataset, root / "manifests", letterbox=image_shape)
    hp = {
        "num_classes": str(len(classes)),
        "num_training_samples": str(len(train.read_text().splitlines())),
        "base_network": "resnet-50",  # SageMaker's; --backbone picks the network built
        "image_shape": str(image_shape),
        "mini_batch_size": "1",
        "label_width": "50",
    }
    (root / "hp.json").write_text(json.dumps(hp))
    command = [
        sys.executable, "-m", "ml_tools.train", "--mode", "fast", "--backbone", network,
        "--train", str(train), "--validation", str(validation), "--label-attribute", "bb",
        "--hyperparameters", str(root / "hp.json"), "--output", str(root / "out" / "model.tar.gz"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    result = repack_model_archive(
        root / "out" / "model.tar.gz",
        root / "deploy-model.tar.gz",
        "model",
        FixOptions(num_classes=len(classes), data_shape=image_shape),
    )
    return result.archive_path, result.deploy_model_name


def measure(root: Path, network: str, image_shape: int, camera: Path, seconds: float) -> dict:
    """Run the function for ``seconds`` after its model loads; frames per second and timings."""
    archive, model_name = build_model(root, network, image_shape)
    install_model(archive, root / "artifacts")
    published = root / "published.jsonl"
    env = function_environment(
        model_name=model_name,
        image_shape=image_shape,
        labels=CLASSES,
        thing_name="deeplens-bench",
        camera_source=camera,
        artifacts_dir=root / "artifacts",
        results_fifo=root / "results.mjpeg",
        base={
            **os.environ,
            "MY_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:deeplens-inference:1",
            "GREENGRASSSDK_DOUBLE_LOG": str(published),
        },
    )
    started = time.monotonic()
    process = start_function(
        write_device_python(root / "bin"), env, extra_path=[DOUBLES], log_path=root / "function.log"
    )
    try:
        loaded_at = None
        while True:
            if process.poll() is not None:
                raise RuntimeError((root / "function.log").read_text()[-3000:])
            lines = published.read_text().splitlines() if published.exists() else []
            if loaded_at is None and any("model loaded" in line for line in lines):
                loaded_at = time.monotonic()
            if loaded_at is not None and time.monotonic() - loaded_at >= seconds:
                break
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)
    messages = [json.loads(line) for line in published.read_text().splitlines()]
    frames = [m["time"] for m in messages if not json.loads(m["payload"]).keys() & {"status", "error"}]
    fps = (len(frames) - 1) / (frames[-1] - frames[0]) if len(frames) > 1 else 0.0
    return {
        "network": network,
        "shape": image_shape,
        "load_s": loaded_at - started,
        "frames": len(frames),
        "fps": fps,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="inference time measured per model")
    parser.add_argument("--image-shape", type=int, default=300)
    parser.add_argument("--networks", nargs="+", default=["tiny", "resnet-50"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-device-") as tmp:
        camera = camera_frames(Path(tmp))
        for network in args.networks:
            root = Path(tmp) / network
            root.mkdir()
            rows.append(measure(root, network, args.image_shape, camera, args.seconds))
    print(
        f"simulated DeepLens: {os.cpu_count()} CPU cores, "
        f"camera {CAMERA_SIZE[0]}x{CAMERA_SIZE[1]}, untrained weights"
    )
    print(f"{'network':<10} {'input':>6} {'optimise+load s':>16} {'frames':>7} {'fps':>6}")
    for row in rows:
        print(
            f"{row['network']:<10} {row['shape']:>6} {row['load_s']:>16.1f} "
            f"{row['frames']:>7} {row['fps']:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
