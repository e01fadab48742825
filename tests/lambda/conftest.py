"""Test doubles of the DeepLens device libraries (``awscam``, ``mo``, ``cv2``, ``greengrasssdk``).

They exist only on the device; these stand-ins record calls and return what the real libraries
return (shapes from the AWS DeepLens documentation). ``cv2`` is backed by Pillow so resizing and
JPEG encoding are real. The function's own logic is never replaced.

The device code needs numpy, which the Airflow environment does not have (MWAA's numpy pin needs
Python 3.12); those tests run in the ML tools environment (numpy 1.23.5, like the device's era):
``.venv-ml/bin/python -m pytest -c tests/lambda/pytest.ini tests/lambda``.
"""

from __future__ import annotations

import io
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import numpy as np

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "include" / "lambda"
if str(LAMBDA_DIR) not in sys.path:
    sys.path.insert(0, str(LAMBDA_DIR))


class StopFrames(BaseException):
    """Raised by the camera double when its frames run out, to end the endless loop."""


class Cv2Double(types.ModuleType):
    """``cv2`` with Pillow doing the pixel work; drawing calls are recorded."""

    FONT_HERSHEY_SIMPLEX = 0

    def __init__(self) -> None:
        super().__init__("cv2")
        self.rectangles: list[tuple] = []
        self.texts: list[tuple] = []

    def resize(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        import numpy as np
        from PIL import Image

        width, height = size
        return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))

    def imencode(self, ext: str, image: np.ndarray) -> tuple[bool, np.ndarray]:
        import numpy as np
        from PIL import Image

        assert ext == ".jpg"
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="JPEG")
        return True, np.frombuffer(buffer.getvalue(), dtype=np.uint8)

    def rectangle(self, image, top_left, bottom_right, colour, thickness) -> None:
        self.rectangles.append((top_left, bottom_right))

    def putText(self, image, text, origin, font, scale, colour, thickness) -> None:
        self.texts.append((text, origin))


class ModelDouble:
    """``awscam.Model``: records inputs, returns the scripted ``parseResult`` output."""

    def __init__(self, owner: AwscamDouble, path: str, loading_config: dict) -> None:
        self.owner = owner
        self.path = path
        self.loading_config = loading_config
        self.inputs: list[tuple[int, ...]] = []

    def doInference(self, frame: np.ndarray) -> dict:
        import numpy as np

        self.inputs.append(frame.shape)
        return {"detection": np.zeros((1, 6), dtype=np.float32)}

    def parseResult(self, model_type: str, raw: dict) -> dict:
        assert "detection" in raw
        return {model_type: self.owner.results.pop(0) if self.owner.results else []}


class AwscamDouble(types.ModuleType):
    """``awscam``: ``getLastFrame`` serves scripted ``(ok, frame)`` pairs, then stops the loop."""

    def __init__(self) -> None:
        super().__init__("awscam")
        self.frames: list[tuple[bool, np.ndarray | None]] = []
        self.results: list[list[dict]] = []
        self.models: list[ModelDouble] = []

    def getLastFrame(self):
        if not self.frames:
            raise StopFrames
        return self.frames.pop(0)

    def Model(self, path: str, loading_config: dict) -> ModelDouble:
        model = ModelDouble(self, path, loading_config)
        self.models.append(model)
        return model


class MoDouble(types.ModuleType):
    """``mo``: ``optimize`` returns ``(error code, model path)`` like the device's optimizer."""

    def __init__(self) -> None:
        super().__init__("mo")
        self.calls: list[tuple] = []
        self.error = 0

    def optimize(self, model_name: str, width: int, height: int):
        self.calls.append((model_name, width, height))
        return self.error, f"/opt/awscam/artifacts/mxnet_{model_name}_FP16_FUSED.xml"


class IotDouble:
    """``greengrasssdk.client('iot-data')``: records what is published."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def publish(self, topic: str, payload: str) -> None:
        self.messages.append((topic, payload))


class GreengrassSdkDouble(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("greengrasssdk")
        self.iot = IotDouble()

    def client(self, name: str) -> IotDouble:
        assert name == "iot-data"
        return self.iot


class Device(types.SimpleNamespace):
    """The installed doubles."""


FUNCTION_MODULES = ("deeplens_inference", "deeplens_display", "deeplens_iot")
GREENGRASS_LAMBDA_ENV = {
    # what a DeepLens's Greengrass V1 core gives its Lambda functions (greengrass_common reads them)
    "MY_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:deeplens-inference:3",
    "ROUTER_FUNCTION_ARN": "arn:aws:lambda:::function:GGRouter",
    "SHADOW_FUNCTION_ARN": "arn:aws:lambda:::function:GGShadowService",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "token",
}
GREENGRASS_V2_COMPONENT_ENV = {
    # what a Greengrass V2 nucleus gives its components: the IPC socket and token
    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": "/greengrass/v2/ipc.socket",
    "SVCUID": "svcuid-token",
}


def set_environment(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    """Exactly ``variables`` of the Greengrass ones are set (the test machine's own are removed)."""
    for name in (*GREENGRASS_LAMBDA_ENV, *GREENGRASS_V2_COMPONENT_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> Iterator[Device]:
    """Install the device library doubles in ``sys.modules``; the function's modules import afresh.

    The process looks like a DeepLens's: a Greengrass Lambda function's environment.
    """
    doubles = Device(
        awscam=AwscamDouble(),
        mo=MoDouble(),
        cv2=Cv2Double(),
        greengrasssdk=GreengrassSdkDouble(),
        StopFrames=StopFrames,
    )
    for name in ("awscam", "mo", "cv2", "greengrasssdk"):
        monkeypatch.setitem(sys.modules, name, getattr(doubles, name))
    set_environment(monkeypatch, GREENGRASS_LAMBDA_ENV)
    for name in FUNCTION_MODULES:
        sys.modules.pop(name, None)
    yield doubles
    for name in FUNCTION_MODULES:
        sys.modules.pop(name, None)
