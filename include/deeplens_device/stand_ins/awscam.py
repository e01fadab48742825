"""Stand-in for the DeepLens ``awscam`` module (camera and inference engine), built on MXNet (CPU).

As documented in the AWS DeepLens Developer Guide ("awscam Module for Inference"):

- ``getLastFrame()`` returns ``(ret, video_frame)``: a BGR ``uint8`` numpy array (OpenCV's order,
  as the device's camera stream). The camera is ``$DEEPLENS_CAMERA_SOURCE``: a folder of images
  (read in name order, at their own size: the device's camera gives 1920x1080 frames, so use such
  images to match it) or a video file (``cv2.VideoCapture``), both looping. Without
  ``$DEEPLENS_CAMERA_FPS`` each call returns the next frame; with it the camera runs on its own
  clock and a call returns the latest frame (waiting for the next one if it was already returned),
  so a slow function skips frames as on the device. No source: ``(False, None)``.
- ``Model(model_topology_file, loading_config, runtime=0)`` loads the ``.xml`` that ``mo.optimize``
  returned (``loading_config`` ``{'GPU': 1}`` or ``{'GPU': 0}``; both run on the CPU here; the Neo
  runtime, ``runtime=1``, is not simulated).
- ``Model.doInference(video_frame)`` takes the model-sized ``H x W x 3`` frame and returns
  ``{output layer name: flat float32 array}`` (for an SSD deploy graph: ``detection``, MXNet's
  ``MultiBoxDetection`` rows ``[class_id, score, xmin, ymin, xmax, ymax]`` with coordinates in 0..1
  and ``class_id`` -1 for suppressed boxes). The frame is fed in the channel order it comes in
  unless the model was optimised with ``--img-format RGB``: like the device, a model trained on
  RGB images (SageMaker's) sees the camera's BGR frames unchanged by default.
- ``Model.parseResult(model_type, raw)``: ``{'ssd': [{'label': class_id, 'prob': p, 'xmin': ..,
  'ymin': .., 'xmax': .., 'ymax': ..}, ...]}`` highest probability first, boxes in pixels of the
  model input (the AWS samples scale them by ``frame size / input size``), ``label`` the network's
  class id from 0 (SageMaker's first class); ``classification`` gives ``{'label', 'prob'}`` items.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import _deeplens_ir as ir
import numpy as np

CAMERA_SOURCE_ENV = "DEEPLENS_CAMERA_SOURCE"
CAMERA_FPS_ENV = "DEEPLENS_CAMERA_FPS"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MODEL_TYPES = ("classification", "ssd", "segmentation")
SSD_ROW = 6


class Model:
    """An optimised model loaded into the (simulated) inference engine."""

    def __init__(self, model_topology_file, loading_config, runtime=0):
        import mxnet as mx

        if runtime != 0:
            raise ValueError(f"runtime={runtime!r}: only the Intel DLDT runtime (0) is simulated")
        if not isinstance(loading_config, dict) or loading_config.get("GPU") not in (0, 1):
            raise ValueError(f"loading_config must be {{'GPU': 1}} or {{'GPU': 0}}, got {loading_config!r}")
        model = ir.read_model_file(Path(model_topology_file))
        symbol = mx.sym.load_json(model.symbol_json)
        self._executor = symbol.simple_bind(mx.cpu(), grad_req="null", data=(1, 3, model.height, model.width))
        weights = mx.nd.load(str(model.weights_path))
        for name, array in self._executor.arg_dict.items():
            if name != "data":
                array[:] = weights[f"arg:{name}"]
        for name, array in self._executor.aux_dict.items():
            array[:] = weights[f"aux:{name}"]
        self._outputs = [
            name[: -len("_output")] if name.endswith("_output") else name for name in symbol.list_outputs()
        ]
        self._model = model

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the frames ``doInference`` takes."""
        return self._model.width, self._model.height

    def doInference(self, video_frame):
        """Run the model on one ``H x W x 3`` frame; ``{output layer name: flat float32 array}``."""
        expected = (self._model.height, self._model.width, 3)
        if not isinstance(video_frame, np.ndarray) or video_frame.shape != expected:
            shape = getattr(video_frame, "shape", type(video_frame).__name__)
            raise ValueError(f"doInference needs a {expected} frame (height, width, channels), got {shape}")
        pixels = video_frame[:, :, ::-1] if self._model.img_format == "RGB" else video_frame
        data = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)[None]
        self._executor.arg_dict["data"][:] = data
        outputs = self._executor.forward(is_train=False)
        return {name: out.asnumpy().ravel() for name, out in zip(self._outputs, outputs, strict=True)}

    def parseResult(self, model_type, raw_infer_result):
        """Parse ``doInference``'s output for a ``classification`` or ``ssd`` model."""
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not one of {list(MODEL_TYPES)}")
        if model_type == "segmentation":
            raise ValueError("segmentation parsing is not simulated by this stand-in")
        if not isinstance(raw_infer_result, dict) or len(raw_infer_result) != 1:
            raise ValueError("parseResult takes doInference's output: a dict with one output layer")
        (values,) = raw_infer_result.values()
        values = np.asarray(values, dtype=np.float32).ravel()
        if model_type == "classification":
            order = np.argsort(-values, kind="stable")
            return {model_type: [{"label": int(i), "prob": float(values[i])} for i in order]}
        if values.size % SSD_ROW:
            raise ValueError(f"an ssd output has rows of {SSD_ROW} values; got {values.size} values")
        width, height = self.input_size
        found = []
        for class_id, prob, xmin, ymin, xmax, ymax in values.reshape(-1, SSD_ROW):
            if class_id < 0:
                continue
            found.append(
                {
                    "label": int(class_id),
                    "prob": float(prob),
                    "xmin": round(float(xmin) * width),
                    "ymin": round(float(ymin) * height),
                    "xmax": round(float(xmax) * width),
                    "ymax": round(float(ymax) * height),
                }
            )
        found.sort(key=lambda obj: -obj["prob"])
        return {model_type: found}


class _Camera:
    """Frames from a folder of images or a video file, looping, optionally on a frame clock."""

    def __init__(self, source: str, fps: float | None) -> None:
        import cv2

        self._cv2 = cv2
        self.source = Path(source)
        self.fps = fps
        self._started = time.monotonic()
        self._returned = -1
        self._position = -1
        self._images: list[Path] = []
        self._decoded: dict[int, np.ndarray] = {}
        self._video = None
        if self.source.is_dir():
            self._images = sorted(p for p in self.source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._images:
                raise ValueError(f"{self.source}: no {'/'.join(IMAGE_SUFFIXES)} images")
        elif self.source.is_file():
            self._video = cv2.VideoCapture(str(self.source))
            if not self._video.isOpened():
                raise ValueError(f"{self.source}: cv2.VideoCapture cannot open it")
        else:
            raise ValueError(f"{self.source}: no such folder or video file")

    def _next_index(self) -> int:
        if not self.fps:
            return self._returned + 1
        while True:
            index = int((time.monotonic() - self._started) * self.fps)
            if index > self._returned:
                return index
            time.sleep((index + 1) / self.fps - (time.monotonic() - self._started))

    def read(self) -> tuple[bool, np.ndarray | None]:
        index = self._next_index()
        self._returned = index
        if self._images:
            slot = index % len(self._images)
            if slot not in self._decoded:
                frame = self._cv2.imread(str(self._images[slot]), self._cv2.IMREAD_COLOR)
                if frame is None:
                    return False, None
                self._decoded[slot] = frame
            return True, self._decoded[slot].copy()
        return self._read_video(index)

    def _read_video(self, index: int) -> tuple[bool, np.ndarray | None]:
        frame = None
        while self._position < index:
            ok, frame = self._video.read()
            if not ok:
                self._video.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._video.read()
                if not ok:
                    return False, None
            self._position += 1
        return (frame is not None), frame


_camera_lock = threading.Lock()
_camera: list = []


def _open_camera():
    source = os.environ.get(CAMERA_SOURCE_ENV, "")
    fps = float(os.environ.get(CAMERA_FPS_ENV) or 0) or None
    if not source:
        raise ValueError(f"no camera: set {CAMERA_SOURCE_ENV} to a folder of images or a video file")
    return _Camera(source, fps)


def getLastFrame():
    """``(True, BGR frame)`` from the camera, or ``(False, None)`` when there is none."""
    with _camera_lock:
        if not _camera:
            try:
                _camera.append(_open_camera())
            except ValueError as exc:
                print(f"awscam: {exc}", file=sys.stderr, flush=True)
                _camera.append(None)
        if _camera[0] is None:
            return False, None
        return _camera[0].read()
