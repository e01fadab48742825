"""Images and boxes for SSD training: decode once, then augmented batches as MXNet wants them.

Images are rescaled to a `data_shape` square (as the built-in algorithm does) and kept as uint8.
Training batches get SSD's usual augmentation: random crop (zoom in), random expansion (zoom out),
horizontal flip and photometric jitter (brightness, contrast, saturation; hue is left alone
because it is what tells the classes apart in the sample dataset). Pixel values stay 0..255: the
networks normalise their input themselves (`bn_data`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ml_tools.manifest import Sample

MEAN_RGB = (123, 117, 104)


class ImageError(ValueError):
    """An image named by a manifest line cannot be decoded; the message names the line."""


@dataclass
class Dataset:
    """Decoded images (N, D, D, 3) uint8 and per-image boxes (k, 5): class_id, xmin, ymin, xmax, ymax."""

    images: np.ndarray
    boxes: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.boxes)


def load_image(path: str, data_shape: int) -> np.ndarray:
    """An image file as a (D, D, 3) uint8 RGB array, stretched to the square like the algorithm."""
    with Image.open(path) as img:
        img.draft("RGB", (data_shape, data_shape))  # JPEG: decode at reduced scale when it can
        rgb = img.convert("RGB")
        return np.asarray(rgb.resize((data_shape, data_shape), Image.Resampling.BILINEAR), dtype=np.uint8)


def load_dataset(samples: Sequence[Sample], data_shape: int) -> Dataset:
    """Decode every sample's image at `data_shape`; raises ImageError naming the manifest line."""
    images = np.empty((len(samples), data_shape, data_shape, 3), dtype=np.uint8)
    boxes = []
    for i, sample in enumerate(samples):
        try:
            images[i] = load_image(str(sample.image), data_shape)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(f"{sample.where}: cannot read image {sample.image}: {exc}") from None
        boxes.append(np.array(sample.boxes, dtype=np.float32).reshape(-1, 5))
    return Dataset(images, boxes)


def label_array(boxes: Sequence[np.ndarray], max_objects: int) -> np.ndarray:
    """MultiBoxTarget's label input: (B, max_objects, 5), rows padded with -1."""
    out = -np.ones((len(boxes), max(1, max_objects), 5), dtype=np.float32)
    for i, b in enumerate(boxes):
        out[i, : len(b)] = b[:max_objects]
    return out


def _crop(img: Image.Image, boxes: np.ndarray, rng: random.Random) -> tuple[Image.Image, np.ndarray]:
    """Zoom in on a random window; keep boxes whose centre stays inside, clipped to the window."""
    size = img.width
    for _ in range(10):
        scale = rng.uniform(0.55, 1.0)
        aspect = rng.uniform(0.75, 1.33)
        w = min(1.0, scale * aspect**0.5)
        h = min(1.0, scale / aspect**0.5)
        x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        if len(boxes) == 0:
            break
        cx = (boxes[:, 1] + boxes[:, 3]) / 2
        cy = (boxes[:, 2] + boxes[:, 4]) / 2
        keep = (cx > x0) & (cx < x0 + w) & (cy > y0) & (cy < y0 + h)
        if keep.all():  # never cut a labelled object out of the picture
            break
    else:
        return img, boxes
    out = boxes.copy()
    if len(out):
        out[:, [1, 3]] = np.clip((out[:, [1, 3]] - x0) / w, 0, 1)
        out[:, [2, 4]] = np.clip((out[:, [2, 4]] - y0) / h, 0, 1)
    region = (x0 * size, y0 * size, (x0 + w) * size, (y0 + h) * size)
    return img.resize((size, size), Image.Resampling.BILINEAR, box=region), out


def _expand(img: Image.Image, boxes: np.ndarray, rng: random.Random) -> tuple[Image.Image, np.ndarray]:
    """Zoom out: shrink the picture onto a mean-coloured canvas of the same size."""
    size = img.width
    ratio = rng.uniform(1.0, 2.0)
    inner = max(8, int(size / ratio))
    ox, oy = rng.randint(0, size - inner), rng.randint(0, size - inner)
    canvas = Image.new("RGB", (size, size), MEAN_RGB)
    canvas.paste(img.resize((inner, inner), Image.Resampling.BILINEAR), (ox, oy))
    out = boxes.copy()
    if len(out):
        out[:, [1, 3]] = (out[:, [1, 3]] * inner + ox) / size
        out[:, [2, 4]] = (out[:, [2, 4]] * inner + oy) / size
    return canvas, out


def _photometric(arr: np.ndarray, rng: random.Random) -> np.ndarray:
    x = arr.astype(np.float32)
    x *= rng.uniform(0.75, 1.25)  # brightness
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.75, 1.25) + mean  # contrast
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * rng.uniform(0.8, 1.2) + grey  # saturation
    return np.clip(x, 0, 255)


def augment(image: np.ndarray, boxes: np.ndarray, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """One randomly augmented copy of an image (uint8 HWC) and its boxes; returns float32 HWC."""
    img = Image.fromarray(image)
    if rng.random() < 0.5:
        img, boxes = _crop(img, boxes, rng)
    if rng.random() < 0.3:
        img, boxes = _expand(img, boxes, rng)
    arr = np.asarray(img)
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
        if len(boxes):
            boxes = boxes.copy()
            boxes[:, [1, 3]] = 1.0 - boxes[:, [3, 1]]
    if len(boxes):  # drop boxes the crop squeezed to nothing
        boxes = boxes[((boxes[:, 3] - boxes[:, 1]) > 0.01) & ((boxes[:, 4] - boxes[:, 2]) > 0.01)]
    return _photometric(arr, rng), boxes


def batches(
    data: Dataset, batch_size: int, max_objects: int, rng: random.Random | None
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(data NCHW float32, label, number of real samples) per batch; shuffled and augmented when
    `rng` is given. The last batch is padded by wrapping around, as MXNet's iterators do."""
    order = list(range(len(data)))
    if rng is not None:
        rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        real = len(idx)
        idx = idx + [order[k % len(order)] for k in range(batch_size - real)]
        pixels, boxes = [], []
        for i in idx:
            if rng is None:
                pixels.append(data.images[i].astype(np.float32))
                boxes.append(data.boxes[i])
            else:
                p, b = augment(data.images[i], data.boxes[i], rng)
                pixels.append(p)
                boxes.append(b)
        yield np.stack(pixels).transpose(0, 3, 1, 2).copy(), label_array(boxes, max_objects), real
