"""``fnc-reid demo``: the whole re-ID job on this machine, with nothing downloaded.

:func:`make_synthetic_dataset` draws a small multi-camera vehicle dataset with PIL: each identity
is a body type (sedan, hatchback, SUV, pickup, van, bus), a paint colour, window tint, rim
colour and a marking (stripes, roof colour, door panel, logo, ...); each camera has its own
viewpoint (facing, scale, shear, tilt), light (brightness, contrast, tint), background (sky,
buildings or trees, road) and blur, and some cameras a foreground pole that occludes part of the
car. Identities are built from shared attributes, so no single cue (say, colour) identifies a
vehicle. The dataset is written as a generic CSV (``path,id,camera,split``) and read back with
:func:`fnc.data.read_csv`, so the demo goes through the same reader a user's data does.

:func:`run_demo` then takes ``fnc_resnet50`` with random weights, scores it, trains it with the
paper's recipe (:class:`fnc.engine.Trainer`: Ranger, warm-up + step decay, Eq. 7 losses, P x K
sampling, flip / pad-crop / random-erasing augmentation) at low resolution, scores it again with
and without k-reciprocal re-ranking, and draws a ranked list and SAB / CAB attention maps.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

__all__ = ["DemoSize", "make_synthetic_dataset", "run_demo", "DEMO_SIZES"]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- identities

# Side-view silhouettes in a unit box (x right = the front of the car, y down), with the
# cabin (glass) polygon and the wheel centres (x) and radius, all as fractions of the box.
_BODIES: dict[str, dict[str, Any]] = {
    "sedan": dict(
        body=[(0.0, 0.62), (0.04, 0.46), (0.24, 0.42), (0.36, 0.22), (0.66, 0.22), (0.8, 0.42),
              (0.98, 0.48), (1.0, 0.62), (1.0, 0.8), (0.0, 0.8)],
        glass=[(0.39, 0.26), (0.63, 0.26), (0.74, 0.42), (0.29, 0.42)],
        wheels=(0.2, 0.8), radius=0.11),
    "hatchback": dict(
        body=[(0.08, 0.78), (0.08, 0.3), (0.16, 0.2), (0.56, 0.2), (0.76, 0.42), (0.96, 0.48),
              (0.98, 0.78)],
        glass=[(0.14, 0.26), (0.54, 0.26), (0.69, 0.42), (0.12, 0.42)],
        wheels=(0.24, 0.8), radius=0.11),
    "suv": dict(
        body=[(0.0, 0.8), (0.0, 0.18), (0.06, 0.1), (0.66, 0.1), (0.8, 0.34), (0.99, 0.4),
              (1.0, 0.8)],
        glass=[(0.06, 0.16), (0.62, 0.16), (0.73, 0.34), (0.05, 0.34)],
        wheels=(0.2, 0.82), radius=0.13),
    "pickup": dict(
        body=[(0.0, 0.8), (0.0, 0.42), (0.46, 0.42), (0.48, 0.14), (0.72, 0.14), (0.82, 0.38),
              (1.0, 0.44), (1.0, 0.8)],
        glass=[(0.52, 0.19), (0.7, 0.19), (0.77, 0.37), (0.52, 0.37)],
        wheels=(0.2, 0.82), radius=0.12),
    "van": dict(
        body=[(0.0, 0.8), (0.0, 0.06), (0.78, 0.06), (0.9, 0.3), (1.0, 0.38), (1.0, 0.8)],
        glass=[(0.7, 0.12), (0.78, 0.12), (0.87, 0.32), (0.7, 0.32)],
        wheels=(0.18, 0.82), radius=0.12),
    "bus": dict(
        body=[(0.0, 0.84), (0.0, 0.02), (0.97, 0.02), (1.0, 0.1), (1.0, 0.84)],
        glass=[(0.04, 0.12), (0.96, 0.12), (0.96, 0.36), (0.04, 0.36)],
        wheels=(0.16, 0.84), radius=0.1),
}

# Common car paints (RGB). Identities share them: colour alone does not identify a vehicle.
_PAINTS = {
    "white": (236, 236, 232), "black": (28, 28, 32), "silver": (160, 164, 170),
    "red": (196, 30, 36), "blue": (30, 70, 170), "green": (30, 120, 60),
    "yellow": (236, 196, 30), "orange": (230, 110, 20), "brown": (110, 70, 40),
    "teal": (20, 140, 150), "purple": (110, 50, 140),
}
_MARKINGS = ("plain", "stripe", "twin_stripes", "roof", "door_panel", "logo", "checker", "lower_band")
_GLASS = [(40, 50, 70), (90, 120, 150), (20, 20, 24), (120, 140, 130)]
_RIMS = [(200, 200, 205), (30, 30, 30), (200, 160, 60)]


@dataclass(frozen=True)
class VehicleStyle:
    """What makes one identity: body type, paint, marking and its colour, glass and rims."""

    body: str
    paint: tuple[int, int, int]
    marking: str
    accent: tuple[int, int, int]
    glass: tuple[int, int, int]
    rim: tuple[int, int, int]
    length: float  # body length relative to the box, per identity


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def _contrasting(paint: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    """An accent colour far from the paint, so a marking is visible on any body."""
    names = list(_PAINTS)
    rng.shuffle(names)
    for name in names:
        c = _PAINTS[name]
        if sum(abs(a - b) for a, b in zip(c, paint)) > 220:
            return c
    return (255 - paint[0], 255 - paint[1], 255 - paint[2])


def _make_styles(num_ids: int, rng: random.Random) -> list[VehicleStyle]:
    combos = [(b, p, m) for b in _BODIES for p in _PAINTS for m in _MARKINGS]
    rng.shuffle(combos)
    if num_ids > len(combos):
        raise ValueError(f"at most {len(combos)} distinct synthetic identities, asked for {num_ids}")
    styles = []
    for body, paint, marking in combos[:num_ids]:
        base = _jitter(_PAINTS[paint], rng, 14)
        styles.append(VehicleStyle(
            body=body, paint=base, marking=marking, accent=_jitter(_contrasting(base, rng), rng, 10),
            glass=rng.choice(_GLASS), rim=rng.choice(_RIMS), length=rng.uniform(0.86, 1.0),
        ))
    return styles


# --------------------------------------------------------------------------- cameras


@dataclass(frozen=True)
class Camera:
    """One camera's view: where it looks from, its light, its background and its optics."""

    facing_right: bool
    scale: float
    shear: float
    tilt: float
    brightness: float
    contrast: float
    tint: tuple[float, float, float]
    sky: tuple[int, int, int]
    ground: tuple[int, int, int]
    scenery: str  # "buildings", "trees" or "plain"
    scenery_color: tuple[int, int, int]
    horizon: float
    blur: float
    pole: bool


def _make_cameras(num_cams: int, rng: random.Random) -> list[Camera]:
    tints = [(1.12, 1.0, 0.82), (0.86, 0.95, 1.16), (1.0, 1.0, 1.0), (0.95, 1.08, 0.92), (1.08, 0.94, 1.04)]
    sceneries = ["buildings", "trees", "plain"]
    cams = []
    for c in range(num_cams):
        sky = (rng.randint(90, 220), rng.randint(110, 225), rng.randint(140, 245))
        cams.append(Camera(
            facing_right=c % 2 == 0,
            scale=rng.uniform(0.84, 1.0),
            shear=rng.uniform(-0.22, 0.22),
            tilt=rng.uniform(-5.0, 5.0),
            brightness=rng.uniform(0.7, 1.3),
            contrast=rng.uniform(0.7, 1.15),
            tint=tints[c % len(tints)],
            sky=sky,
            ground=(rng.randint(60, 130), rng.randint(60, 120), rng.randint(50, 110)),
            scenery=sceneries[c % len(sceneries)],
            scenery_color=(rng.randint(40, 200), rng.randint(40, 200), rng.randint(40, 200)),
            horizon=rng.uniform(0.4, 0.6),
            blur=rng.choice([0.0, 0.6, 1.2, 1.8]),
            pole=c % 3 == 1,
        ))
    return cams


# --------------------------------------------------------------------------- drawing


def _background(cam: Camera, size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, cam.sky)
    draw = ImageDraw.Draw(img)
    horizon = int(cam.horizon * h)
    if cam.scenery == "buildings":
        x = rng.randint(-w // 8, 0)
        while x < w:
            bw, bh = rng.randint(w // 10, w // 4), rng.randint(h // 6, int(h * 0.45))
            shade = _jitter(cam.scenery_color, rng, 25)
            draw.rectangle([x, horizon - bh, x + bw, horizon], fill=shade)
            for wy in range(horizon - bh + 6, horizon - 6, 12):  # lit windows
                for wx in range(x + 4, x + bw - 6, 10):
                    draw.rectangle([wx, wy, wx + 4, wy + 5], fill=_jitter((230, 220, 150), rng, 20))
            x += bw + rng.randint(2, 10)
    elif cam.scenery == "trees":
        for _ in range(rng.randint(4, 8)):
            cx, r = rng.randint(0, w), rng.randint(h // 10, h // 5)
            draw.rectangle([cx - r // 6, horizon - r, cx + r // 6, horizon], fill=(80, 55, 30))
            draw.ellipse([cx - r, horizon - 2 * r, cx + r, horizon - r // 3], fill=_jitter(cam.scenery_color, rng, 30))
    draw.rectangle([0, horizon, w, h], fill=cam.ground)
    # The road: a band with dashed lane marks, where the car stands.
    road_top = int(h * 0.68)
    draw.rectangle([0, road_top, w, h], fill=_jitter((75, 75, 80), rng, 10))
    offset = rng.randint(0, 40)
    for x in range(-offset, w, 48):
        draw.rectangle([x, int(h * 0.9), x + 24, int(h * 0.9) + 3], fill=(230, 230, 210))
    return img


def _poly(points: list[tuple[float, float]], box: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    x0, y0, bw, bh = box
    return [(x0 + x * bw, y0 + y * bh) for x, y in points]


def _draw_vehicle(style: VehicleStyle, size: tuple[int, int]) -> Image.Image:
    """The vehicle facing right on a transparent canvas of ``size`` (RGBA)."""
    w, h = size
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    shape = _BODIES[style.body]
    bw, bh = w * style.length * 0.9, h * 0.72
    box = ((w - bw) / 2, h * 0.12, bw, bh)
    body = _poly(shape["body"], box)
    draw.polygon(body, fill=style.paint, outline=(20, 20, 20))

    # Markings are drawn clipped to the body through a mask, so they follow its outline.
    marks = Image.new("RGBA", size, (0, 0, 0, 0))
    mdraw = ImageDraw.Draw(marks)
    x0, y0 = box[0], box[1]
    if style.marking == "stripe":
        mdraw.rectangle([x0, y0 + 0.52 * bh, x0 + bw, y0 + 0.6 * bh], fill=style.accent)
    elif style.marking == "twin_stripes":
        for lo in (0.48, 0.62):
            mdraw.rectangle([x0, y0 + lo * bh, x0 + bw, y0 + (lo + 0.05) * bh], fill=style.accent)
    elif style.marking == "roof":
        mdraw.rectangle([x0, y0, x0 + bw, y0 + 0.25 * bh], fill=style.accent)
    elif style.marking == "door_panel":
        mdraw.rectangle([x0 + 0.35 * bw, y0 + 0.44 * bh, x0 + 0.62 * bw, y0 + 0.74 * bh], fill=style.accent)
    elif style.marking == "logo":
        cx, cy, r = x0 + 0.5 * bw, y0 + 0.6 * bh, 0.1 * bh
        mdraw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=style.accent)
    elif style.marking == "checker":
        step = bw / 12
        for i in range(12):
            for j in range(2):
                if (i + j) % 2 == 0:
                    top = y0 + (0.5 + 0.08 * j) * bh
                    mdraw.rectangle([x0 + i * step, top, x0 + (i + 1) * step, top + 0.08 * bh], fill=style.accent)
    elif style.marking == "lower_band":
        mdraw.rectangle([x0, y0 + 0.68 * bh, x0 + bw, y0 + 0.8 * bh], fill=style.accent)
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon(body, fill=255)
    img.paste(marks, (0, 0), Image.composite(marks, Image.new("RGBA", size), mask).getchannel("A"))

    draw = ImageDraw.Draw(img)
    draw.polygon(_poly(shape["glass"], box), fill=style.glass, outline=(15, 15, 15))
    # Head and tail lights: tell the front from the back, as in real viewpoints.
    fy = y0 + 0.5 * bh
    draw.rectangle([x0 + bw - 0.03 * bw, fy, x0 + bw, fy + 0.07 * bh], fill=(255, 240, 170))
    draw.rectangle([x0, fy, x0 + 0.025 * bw, fy + 0.07 * bh], fill=(200, 20, 20))
    # Rear and front wheels, symmetric about the middle; (x of the rear one, y of both).
    wheel_x, wheel_y = shape["wheels"]
    r = shape["radius"] * bh * 1.25
    for px in (x0 + wheel_x * bw, x0 + (1 - wheel_x) * bw):
        py = y0 + wheel_y * bh
        draw.ellipse([px - r, py - r, px + r, py + r], fill=(18, 18, 18))
        draw.ellipse([px - 0.5 * r, py - 0.5 * r, px + 0.5 * r, py + 0.5 * r], fill=style.rim)
    return img


def _render(style: VehicleStyle, cam: Camera, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """One photo of ``style`` by ``cam``: viewpoint, background, light, occlusion and blur."""
    w, h = size
    scene = _background(cam, size, rng)
    car = _draw_vehicle(style, size)
    if not cam.facing_right:
        car = ImageOps.mirror(car)
    # Viewpoint: the camera's scale, shear and tilt, with a little per-shot jitter.
    scale = cam.scale * rng.uniform(0.94, 1.06)
    shear = cam.shear + rng.uniform(-0.04, 0.04)
    car = car.rotate(cam.tilt + rng.uniform(-1.5, 1.5), resample=Image.BICUBIC)
    car = car.transform(size, Image.AFFINE, (1, shear, -shear * h / 2, 0, 1, 0), resample=Image.BICUBIC)
    cw, ch = max(1, int(w * scale)), max(1, int(h * scale))
    car = car.resize((cw, ch), Image.BICUBIC)
    dx = (w - cw) // 2 + rng.randint(-w // 20, w // 20)
    dy = h - ch - int(h * 0.04) + rng.randint(-h // 30, h // 30)
    scene.paste(car, (dx, dy), car)
    if cam.pole:
        px = int(w * rng.uniform(0.15, 0.3)) if cam.facing_right else int(w * rng.uniform(0.7, 0.85))
        ImageDraw.Draw(scene).rectangle([px, 0, px + max(2, w // 28), h], fill=(90, 90, 95))
    # Light: brightness, contrast and colour cast of the camera and the hour.
    scene = ImageEnhance.Brightness(scene).enhance(cam.brightness * rng.uniform(0.92, 1.08))
    scene = ImageEnhance.Contrast(scene).enhance(cam.contrast)
    channels = [ch_.point(lambda v, f=f: min(255, int(v * f))) for ch_, f in zip(scene.split(), cam.tint)]
    scene = Image.merge("RGB", channels)
    if cam.blur > 0:
        scene = scene.filter(ImageFilter.GaussianBlur(cam.blur * rng.uniform(0.8, 1.2)))
    return scene


# --------------------------------------------------------------------------- dataset


def make_synthetic_dataset(
    root: str | os.PathLike,
    *,
    num_train_ids: int = 32,
    num_test_ids: int = 16,
    num_cams: int = 4,
    shots_per_cam: int = 2,
    image_size: tuple[int, int] = (96, 128),
    queries_per_id: int = 2,
    seed: int = 0,
) -> Path:
    """Draw a synthetic multi-camera vehicle re-ID dataset and write it as ``labels.csv`` + images.

    Every identity is photographed ``shots_per_cam`` times by each of ``num_cams`` cameras.
    Training and test identities are disjoint, as in VeRi-776 and CityFlow. Of each test
    identity, ``queries_per_id`` images from different cameras are queries; the rest form the
    gallery. Read it with ``fnc.data.read_dataset("csv:ROOT/labels.csv")``.

    Args:
        root: output folder (created); images go to ``root/images``.
        num_train_ids: training identities.
        num_test_ids: query / gallery identities.
        num_cams: cameras (each with its own viewpoint, light, background and blur).
        shots_per_cam: images of each identity per camera.
        image_size: (H, W) of the written images.
        queries_per_id: query images per test identity (at most ``num_cams``).
        seed: everything drawn depends only on it.

    Returns:
        The path of ``labels.csv`` (header ``path,id,camera,split``, paths relative to it).

    >>> import tempfile
    >>> csv_path = make_synthetic_dataset(tempfile.mkdtemp(), num_train_ids=4, num_test_ids=2,
    ...                                   num_cams=2, shots_per_cam=1, image_size=(24, 32))
    >>> csv_path.name
    'labels.csv'
    """
    if not 1 <= queries_per_id <= num_cams:
        raise ValueError(f"queries_per_id must be in [1, num_cams={num_cams}], got {queries_per_id}")
    if num_cams * shots_per_cam <= queries_per_id:
        raise ValueError("each test identity needs gallery images besides its queries: raise shots_per_cam or num_cams")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    styles = _make_styles(num_train_ids + num_test_ids, rng)
    cams = _make_cameras(num_cams, rng)
    hgt, wid = image_size
    rows = []
    for pid, style in enumerate(styles, start=1):
        test = pid > num_train_ids
        query_cams = set(rng.sample(range(num_cams), queries_per_id)) if test else set()
        for c, cam in enumerate(cams, start=1):
            for shot in range(shots_per_cam):
                # VeRi-style name: id_camera_shot, so files also read as a VeRi folder would.
                name = f"{pid:04d}_c{c:03d}_{shot:02d}.jpg"
                _render(style, cam, (wid, hgt), rng).save(root / "images" / name, quality=92)
                split = "train" if not test else ("query" if shot == 0 and c - 1 in query_cams else "gallery")
                rows.append((f"images/{name}", pid, c, split))
    path = root / "labels.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "id", "camera", "split"])
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------- the demo


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: data, resolution and training length.

    The recipe is the paper's (Ranger = RAdam + Lookahead, Eq. 7 losses, P x K batches, flip and
    pad + crop) with the schedule's shape (linear warm-up from 0.1 x lr, two x0.1 steps)
    compressed to the short run: warm-up over the first epoch, steps at 2/3 and 5/6 of it.
    Departures, all because every weight starts random and the run has a few hundred steps:
    peak lr 1e-2 (the paper's 3.5e-4 fine-tunes an ImageNet backbone), no random erasing and
    betas (0.9, 0.99) (see the fields), re-ranking with Zhong et al.'s defaults.
    """

    num_train_ids: int
    num_test_ids: int
    num_cams: int
    shots_per_cam: int
    image_size: tuple[int, int]  # (H, W) of the drawn images
    input_size: tuple[int, int]  # (H, W) the model sees
    epochs: int
    batch_size: int
    lr: float = 1e-2
    padding: int = 2  # BoT's 10 px at 256 x 128, scaled to the low resolution
    # Random erasing off: at 48 x 64 one erased rectangle hides most of a vehicle's marking, and
    # from random weights in a few hundred steps it cost more than it regularised (2 seeds:
    # trained mAP 15-23% with it, 29-39% without). Shorter moment memories (Ranger's betas are
    # 0.95, 0.999) adapt faster in a short run.
    erase_p: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    rerank_k1: int = 20  # Zhong et al.'s defaults: the paper's k1=75 exceeds this small gallery
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    examples: int = 3  # queries drawn in the PNGs


DEMO_SIZES = {
    "default": DemoSize(num_train_ids=64, num_test_ids=40, num_cams=4, shots_per_cam=1,
                        image_size=(96, 128), input_size=(48, 64), epochs=12, batch_size=16),
    # For tests: seconds, not minutes; the numbers mean nothing.
    "quick": DemoSize(num_train_ids=6, num_test_ids=4, num_cams=2, shots_per_cam=2,
                      image_size=(48, 64), input_size=(32, 48), epochs=1, batch_size=8,
                      rerank_k1=6, rerank_k2=2, examples=2),
}


def _milestones(epochs: int) -> tuple[int, ...]:
    steps = sorted({max(2, round(epochs * 2 / 3)), max(3, round(epochs * 5 / 6))})
    return tuple(s for s in steps if s < epochs) or (epochs + 1,)


def _stack(rows: list[Image.Image], title: str, labels: list[str] | None = None) -> Image.Image:
    """Rows one under another, under a title; each row optionally with a label on its left."""
    from fnc.viz import _font  # the same font the row pictures use

    font, small = _font(14), _font(12)
    label_w = 90 if labels else 0
    width = max(r.width for r in rows) + label_w
    height = 30 + sum(r.height for r in rows)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 8), title, fill=(20, 20, 20), font=font)
    y = 30
    for i, row in enumerate(rows):
        canvas.paste(row, (label_w, y))
        if labels:
            draw.text((8, y + row.height // 2 - 14), labels[i], fill=(20, 20, 20), font=small)
        y += row.height
    return canvas


def _ranked(model, data, input_size, device) -> tuple[Any, Any]:
    """Distances (num_query, num_gallery) of L2-normalised embeddings, as the evaluation uses."""
    import numpy as np
    import torch

    import fnc

    kw = dict(normalize=True, input_size=input_size, progress=False, device=device)
    q = torch.from_numpy(fnc.extract(model, [r.path for r in data.query], **kw))
    g = torch.from_numpy(fnc.extract(model, [r.path for r in data.gallery], **kw))
    dist = torch.cdist(q.double(), g.double()).numpy()
    # VeRi protocol: the same vehicle seen by the same camera is not a match to find.
    q_ids = np.array([[r.pid, r.camid] for r in data.query])
    g_ids = np.array([[r.pid, r.camid] for r in data.gallery])
    junk = (q_ids[:, None, 0] == g_ids[None, :, 0]) & (q_ids[:, None, 1] == g_ids[None, :, 1])
    return np.where(junk, np.inf, dist), junk


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{100 * v:5.1f}%"


def run_demo(
    output_dir: str | os.PathLike = "fnc-demo",
    *,
    quick: bool = False,
    seed: int = 0,
    epochs: int | None = None,
    device: str | None = None,
    save_model: bool = False,
    progress: bool = True,
    echo: Any = print,
) -> dict[str, Any]:
    """Draw a synthetic vehicle dataset, train FNC on it from scratch, score it, and draw it.

    Steps: write the dataset (:func:`make_synthetic_dataset`) to ``output_dir/data`` and read it
    with the CSV reader; create ``fnc_resnet50`` with random weights (nothing is downloaded);
    evaluate it (mAP / rank-1, VeRi protocol, with and without k-reciprocal re-ranking); train it
    with :class:`fnc.engine.Trainer` and the paper's recipe (see :class:`DemoSize`); evaluate
    again; write ``ranked_list.png`` (queries with their top matches before and after training)
    and ``attention_maps.png`` (SAB attention and CAB energy of the trained model).

    The default size takes about 3.5 minutes on 2 quiet CPU cores (up to 6m40s on cores shared
    with other jobs; see the README); ``quick=True`` runs in seconds and is for tests.

    Args:
        output_dir: where the data, pictures (and model, if saved) go.
        quick: the tiny size (a smoke test, meaningless numbers).
        seed: seeds the drawing, the model's initialisation and training.
        epochs: override the size's number of epochs.
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA if available.
        save_model: also write the trained model to ``output_dir/model`` (``save_pretrained``;
            load it with ``fnc.create_model(checkpoint_path=...)``).
        progress: show training progress bars.
        echo: where the report lines go (``print`` by default; ``lambda *a: None`` silences).

    Returns:
        ``{"before": metrics, "after": metrics, "ranked_list": path, "attention_maps": path,
        "model": path or None, "data": labels.csv path, "seconds": float, "epochs": int}``;
        metrics are fractions with keys ``mAP``, ``rank1``, ... and ``mAP_rerank``, ``rank1_rerank``, ...

    >>> result = run_demo("/tmp/fnc-demo", quick=True, progress=False)  # doctest: +SKIP
    >>> result["after"]["mAP"] > result["before"]["mAP"]  # doctest: +SKIP
    True
    """
    import torch

    import fnc
    from fnc.data import read_dataset
    from fnc.engine import Trainer

    start = time.perf_counter()
    size = DEMO_SIZES["quick" if quick else "default"]
    num_epochs = epochs if epochs is not None else size.epochs
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    csv_path = make_synthetic_dataset(
        out / "data", num_train_ids=size.num_train_ids, num_test_ids=size.num_test_ids,
        num_cams=size.num_cams, shots_per_cam=size.shots_per_cam, image_size=size.image_size,
        queries_per_id=1, seed=seed,
    )
    data = read_dataset(f"csv:{csv_path}")
    echo(f"Synthetic vehicles drawn to {csv_path.parent} ({time.perf_counter() - start:.0f}s)")
    echo(data.summary())

    torch.manual_seed(seed)
    model = fnc.create_model("fnc_resnet50", pretrained=False)
    # Record the demo's resolution, so extract() and a saved copy use it by default.
    model.pretrained_cfg = dataclasses.replace(model.pretrained_cfg, input_size=(3, *size.input_size), dataset="synthetic")
    trainer = Trainer(
        model, data, None,
        epochs=num_epochs, batch_size=size.batch_size, num_instances=4, input_size=size.input_size,
        lr=size.lr, warmup_epochs=1, milestones=_milestones(num_epochs), padding=size.padding,
        erase_p=size.erase_p, betas=size.betas,
        eval_every=0, rerank=True, rerank_k1=size.rerank_k1, rerank_k2=size.rerank_k2,
        rerank_lambda=size.rerank_lambda, protocol="veri", num_workers=0, device=device,
        progress=progress, seed=seed,
    )
    hgt, wid = size.input_size
    echo(f"\nfnc_resnet50, random weights, {hgt}x{wid} input, {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters")
    before = trainer.evaluate()
    dist_before, _ = _ranked(trainer.model, data, size.input_size, trainer.device)
    steps = len(trainer.loader) * num_epochs
    echo(f"untrained: mAP {_pct(before['mAP'])}, rank-1 {_pct(before['rank1'])}")
    echo(f"training {num_epochs} epoch{'s' if num_epochs > 1 else ''} ({steps} steps of {size.batch_size // 4} ids x 4 images), "
         f"Ranger lr {size.lr:g}, warm-up 1 epoch, x0.1 at epochs {', '.join(map(str, _milestones(num_epochs)))} ...")
    train_start = time.perf_counter()
    # With eval_every=0 the trainer evaluates once, after the last epoch: those are its metrics.
    after = trainer.fit()
    train_seconds = time.perf_counter() - train_start
    model = trainer.model.eval()

    echo(f"trained in {train_seconds:.0f}s\n")
    echo(f"{'':<12}{'mAP':>8}{'rank-1':>8}{'mAP +RR':>10}{'rank-1 +RR':>12}")
    for name, m in (("untrained", before), ("trained", after)):
        echo(f"{name:<12}{_pct(m['mAP']):>8}{_pct(m['rank1']):>8}{_pct(m.get('mAP_rerank')):>10}{_pct(m.get('rank1_rerank')):>12}")
    echo(f"(+RR: k-reciprocal re-ranking, k1={size.rerank_k1}, k2={size.rerank_k2}, lambda={size.rerank_lambda}; "
         f"{len(data.query)} queries, {len(data.gallery)} gallery images of {size.num_test_ids} unseen vehicles)")

    # Pictures: the first query of a few different identities.
    dist_after, _ = _ranked(model, data, size.input_size, trainer.device)
    picked, seen = [], set()
    for i, rec in enumerate(data.query):
        if rec.pid not in seen:
            picked.append(i)
            seen.add(rec.pid)
        if len(picked) == size.examples:
            break
    gallery_paths = [r.path for r in data.gallery]
    gallery_ids = [r.pid for r in data.gallery]
    k = min(8, len(gallery_paths))
    rows, labels = [], []
    for i in picked:
        q = data.query[i]
        for name, dist in (("untrained", dist_before), ("trained", dist_after)):
            order = [j for j in dist[i].argsort(kind="stable") if dist[i, j] != float("inf")]
            rows.append(fnc.viz.ranked_list(q.path, gallery_paths, ranked_indices=order[:k], query_id=q.pid,
                                            gallery_ids=gallery_ids, k=k, thumb_size=(72, 96)))
            labels.append(name)
    ranked_path = out / "ranked_list.png"
    _stack(rows, f"Query (blue) and its top {k} gallery matches: green = same vehicle, red = another one",
           labels).save(ranked_path)

    # Drawn at a multiple of the training size with panels >= 300 px wide, so they and their titles
    # are legible; the blocks are convolutional / non-local, so the model runs at any size.
    zoom = -(-300 // wid)
    maps = [fnc.viz.attention_map(model, data.query[i].path, input_size=(hgt * zoom, wid * zoom)) for i in picked]
    attention_path = out / "attention_maps.png"
    _stack(maps, f"Trained FNC at {zoom}x its {hgt}x{wid} training size: SAB attention of the marked position, "
                 "CAB channel-mask energy").save(attention_path)

    model_path = None
    if save_model:
        model_path = out / "model"
        model.save_pretrained(model_path, dataset="synthetic (fnc-reid demo)",
                              metrics={"mAP": 100 * after["mAP"], "rank1": 100 * after["rank1"]})
    seconds = time.perf_counter() - start
    echo(f"\nranked lists:   {ranked_path}\nattention maps: {attention_path}")
    if model_path is not None:
        echo(f"model:          {model_path}")
    echo(f"done in {seconds:.0f}s")
    return {
        "before": before, "after": after, "ranked_list": ranked_path, "attention_maps": attention_path,
        "model": model_path, "data": csv_path, "seconds": seconds, "epochs": num_epochs,
    }
