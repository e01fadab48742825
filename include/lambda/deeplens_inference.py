"""AWS DeepLens object-detection inference function (Greengrass Lambda, Python 3.7).

Like every DeepLens function, it runs its inference loop at import: the Greengrass core loads
this long-lived (pinned) function once and ``function_handler`` is never the entry point.

Loop: ``mo.optimize`` turns ``/opt/awscam/artifacts/<model>-symbol.json`` + params into an
optimised model, ``awscam.Model(path, {'GPU': 1})`` loads it, then for each frame:
``awscam.getLastFrame`` -> ``doInference`` -> ``parseResult('ssd', ...)``. Detections are
published as ``{label: probability}`` JSON on the IoT topic and drawn on the frame streamed to
the ``/tmp/results.mjpeg`` FIFO. Errors are published on the same topic, never swallowed.

Nothing here is edited per project: the model name, image size, class labels, threshold and
topic come from environment variables set by the deployment, or from ``deeplens_config.json``
(see ``deeplens_logic.load_config``).
"""

from __future__ import annotations

import logging
import os
import time

import awscam  # the DeepLens device library; AWS asks to import it before cv2
import cv2
import deeplens_logic as logic
import mo
import numpy as np
from deeplens_display import LocalDisplay
from deeplens_iot import iot_client

logger = logging.getLogger("deeplens_inference")

BOX_COLOUR = (255, 165, 20)  # BGR, the DeepLens samples' colour
MO_ERRORS = {
    1: "the requested platform is not supported (only MXNet is)",
    2: "the model optimizer failed (check the model's files in /opt/awscam/artifacts)",
}


def function_handler(event, context):
    """Greengrass handler; unused, as the work happens in the loop started at import."""
    return None


_canvases = {}


def _canvas(shape, dtype, left, top):
    """A zeroed letterbox canvas, reused while frames keep their size (only the content is rewritten)."""
    key = (shape, str(dtype), left, top)
    if key not in _canvases:
        _canvases.clear()
        _canvases[key] = np.zeros(shape, dtype=dtype)
    return _canvases[key]


def model_input(frame, size, mode):
    """The square ``size`` x ``size`` RGB model input made from BGR ``frame`` by ``mode`` (RESIZE_MODES).

    The camera gives BGR frames and the device feeds the model what it is given; SageMaker's object
    detection trains on RGB images, so the channels are swapped here (else blue reads as orange).
    """
    height, width = frame.shape[:2]
    region = logic.input_region(width, height, mode)
    if mode == "letterbox":
        source = _canvas((region.side, region.side, *frame.shape[2:]), frame.dtype, region.left, region.top)
        source[region.top : region.top + height, region.left : region.left + width] = frame
    elif mode == "crop":
        source = frame[region.top : region.top + region.side, region.left : region.left + region.side]
    else:
        source = frame
    return np.ascontiguousarray(cv2.resize(source, (size, size))[:, :, ::-1])


def load_model(config, publish):
    """Optimise the deployed model for the device's GPU and load it."""
    publish(logic.status_payload(f"optimizing model {config.model_name} at {config.image_shape}px"))
    error, model_path = mo.optimize(config.model_name, config.image_shape, config.image_shape)
    if error != 0:
        raise RuntimeError(
            "mo.optimize({!r}, {}, {}) returned error {}: {}".format(
                config.model_name,
                config.image_shape,
                config.image_shape,
                error,
                MO_ERRORS.get(error, "unknown error code"),
            )
        )
    publish(logic.status_payload(f"loading optimized model {model_path}"))
    return awscam.Model(model_path, {"GPU": 1})


def infer_frame(model, frame, config):
    """Detections in ``frame`` (frame pixels), above the configured threshold."""
    height, width = frame.shape[:2]
    raw = model.doInference(model_input(frame, config.image_shape, config.resize_mode))
    parsed = model.parseResult(logic.MODEL_TYPE, raw)
    transform = logic.model_to_frame(width, height, config.image_shape, config.resize_mode)
    return logic.detections(parsed, config.labels, config.threshold, transform, width, height)


def annotate(frame, found):
    """Draw each detection's box and caption on ``frame`` in place."""
    for detection in found:
        cv2.rectangle(
            frame, (detection.xmin, detection.ymin), (detection.xmax, detection.ymax), BOX_COLOUR, 4
        )
        cv2.putText(
            frame,
            logic.annotation_text(detection),
            logic.caption_origin(detection),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.5,
            BOX_COLOUR,
            3,
        )


def run_inference_loop(config, client, display):
    """Load the model, then infer frame after frame until the function is stopped.

    A failed frame publishes the error and waits (1 s, doubling up to 30 s) before the next one;
    failing to load the model raises, after publishing why.
    """

    def publish(payload):
        client.publish(topic=config.iot_topic, payload=payload)

    model = load_model(config, publish)
    publish(logic.status_payload("model loaded; detecting {}".format(", ".join(config.labels))))
    backoff = 0.0
    while True:
        try:
            ok, frame = awscam.getLastFrame()
            if not ok:
                raise RuntimeError("awscam.getLastFrame() returned no frame")
            found = infer_frame(model, frame, config)
            annotate(frame, found)
            display.set_frame_data(frame)
            publish(logic.detections_payload(found))
            backoff = 0.0
        except Exception as exc:
            backoff = logic.next_backoff(backoff)
            logger.exception("inference failed; next frame in %.0f s", backoff)
            try:
                publish(logic.error_payload("inference", exc))
            except Exception:
                logger.exception("could not publish the error on %s", config.iot_topic)
            time.sleep(backoff)


def main():
    """Read the configuration, start the local display and run the loop (called at import)."""
    client = iot_client()
    try:
        config = logic.load_config(os.environ, logic.default_config_path(__file__))
    except Exception as exc:
        topic = os.environ.get(logic.ENVIRONMENT_NAMES["iot_topic"]) or logic.default_topic(
            os.environ.get("AWS_IOT_THING_NAME", "unknown-thing")
        )
        client.publish(topic=topic, payload=logic.error_payload("configuration", exc))
        raise
    display = LocalDisplay(config.results_fifo, config.display_resolution)
    display.start()
    try:
        run_inference_loop(config, client, display)
    except Exception as exc:
        client.publish(topic=config.iot_topic, payload=logic.error_payload("model", exc))
        raise
    finally:
        display.stop()


main()
