"""A synthetic multi-camera vehicle re-ID dataset, drawn with PIL, for the offline demo and tests.

:func:`make_synthetic_dataset` draws it: each identity
is a body type (sedan, hatchback, SUV, pickup, van, bus), a paint colour, window tint, rim
colour and a marking (stripes, roof colour, door panel, logo, ...); each camera has its own
viewpoint (facing, scale, shear, tilt), light (brightness, contrast, tint), background (sky,
buildings or trees, road) and blur, and some cameras a foreground pole that occludes part of the
car; with probability ``occluder_p`` a shot also has a bush, a row of bollards or a sign post in
front of the vehicle. Identities are built from shared attributes, so no single cue (say, colour) identifies a
vehicle. The dataset is written as a generic CSV (``path,id,camera,split``) and read back with
:func:`fnc.data.read_csv`, so the demo goes through the same reader a user's data does; beside it,
``boxes.json`` gives each image's vehicle box, so the demo can point at the vehicle.
"""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

__all__ = ["make_synthetic_dataset"]

# --------------------------------------------------------------------------- identities

# Side-view silhouettes in a unit box (x right = the front of the car, y down), with the
# cabin (glass) polygon and the wheel centres (x) and radius, all as fractions of the box.
_BODIES: dict[str, dict[str, Any]] = {
    "sedan": dict(
        body=[
            (0.0, 0.62),
            (0.04, 0.46),
            (0.24, 0.42),
            (0.36, 0.22),
            (0.66, 0.22),
            (0.8, 0.42),
            (0.98, 0.48),
            (1.0, 0.62),
            (1.0, 0.8),
            (0.0, 0.8),
        ],
        glass=[(0.39, 0.26), (0.63, 0.26), (0.74, 0.42), (0.29, 0.42)],
        wheels=(0.2, 0.8),
        radius=0.11,
    ),
    "hatchback": dict(
        body=[(0.08, 0.78), (0.08, 0.3), (0.16, 0.2), (0.56, 0.2), (0.76, 0.42), (0.96, 0.48), (0.98, 0.78)],
        glass=[(0.14, 0.26), (0.54, 0.26), (0.69, 0.42), (0.12, 0.42)],
        wheels=(0.24, 0.8),
        radius=0.11,
    ),
    "suv": dict(
        body=[(0.0, 0.8), (0.0, 0.18), (0.06, 0.1), (0.66, 0.1), (0.8, 0.34), (0.99, 0.4), (1.0, 0.8)],
        glass=[(0.06, 0.16), (0.62, 0.16), (0.73, 0.34), (0.05, 0.34)],
        wheels=(0.2, 0.82),
        radius=0.13,
    ),
    "pickup": dict(
        body=[(0.0, 0.8), (0.0, 0.42), (0.46, 0.42), (0.48, 0.14), (0.72, 0.14), (0.82, 0.38), (1.0, 0.44), (1.0, 0.8)],
        glass=[(0.52, 0.19), (0.7, 0.19), (0.77, 0.37), (0.52, 0.37)],
        wheels=(0.2, 0.82),
        radius=0.12,
    ),
    "van": dict(
        body=[(0.0, 0.8), (0.0, 0.06), (0.78, 0.06), (0.9, 0.3), (1.0, 0.38), (1.0, 0.8)],
        glass=[(0.7, 0.12), (0.78, 0.12), (0.87, 0.32), (0.7, 0.32)],
        wheels=(0.18, 0.82),
        radius=0.12,
    ),
    "bus": dict(
        body=[(0.0, 0.84), (0.0, 0.02), (0.97, 0.02), (1.0, 0.1), (1.0, 0.84)],
        glass=[(0.04, 0.12), (0.96, 0.12), (0.96, 0.36), (0.04, 0.36)],
        wheels=(0.16, 0.84),
        radius=0.1,
    ),
}

# Common car paints (RGB). Identities share them: colour alone does not identify a vehicle.
_PAINTS = {
    "white": (236, 236, 232),
    "black": (28, 28, 32),
    "silver": (160, 164, 170),
    "red": (196, 30, 36),
    "blue": (30, 70, 170),
    "green": (30, 120, 60),
    "yellow": (236, 196, 30),
    "orange": (230, 110, 20),
    "brown": (110, 70, 40),
    "teal": (20, 140, 150),
    "purple": (110, 50, 140),
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
        styles.append(
            VehicleStyle(
                body=body,
                paint=base,
                marking=marking,
                accent=_jitter(_contrasting(base, rng), rng, 10),
                glass=rng.choice(_GLASS),
                rim=rng.choice(_RIMS),
                length=rng.uniform(0.86, 1.0),
            )
        )
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
        cams.append(
            Camera(
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
            )
        )
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


def _occlude(scene: Image.Image, box: tuple[float, float, float, float], rng: random.Random) -> None:
    """One foreground occluder over part of the vehicle: a bush, a bollard row or a sign post."""
    w, h = scene.size
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    draw = ImageDraw.Draw(scene)
    kind = rng.choice(("bush", "bollards", "sign"))
    if kind == "bush":  # hides a wheel and the lower body at one end
        cx = rng.choice((x0 + 0.15 * (x1 - x0), x1 - 0.15 * (x1 - x0)))
        r = rng.uniform(0.14, 0.22) * (x1 - x0)
        green = _jitter((50, 110, 45), rng, 25)
        for _ in range(3):
            ox = cx + rng.uniform(-r, r) * 0.6
            draw.ellipse([ox - r, h - 1.3 * r, ox + r, h + 0.7 * r], fill=green)
    elif kind == "bollards":  # a row of short posts in front of the wheels
        top = y0 + rng.uniform(0.62, 0.75) * (y1 - y0)
        step = rng.uniform(0.12, 0.2) * w
        x = rng.uniform(0, step)
        color = rng.choice([(200, 170, 40), (220, 220, 220), (60, 60, 64)])
        while x < w:
            draw.rectangle([x, top, x + max(2, w // 40), h], fill=color)
            x += step
    else:  # a sign post with a plate, somewhere over the body
        px = rng.uniform(x0 + 0.2 * (x1 - x0), x1 - 0.2 * (x1 - x0))
        draw.rectangle([px, y0 - 0.1 * h, px + max(2, w // 45), h], fill=(110, 110, 115))
        pw, ph = 0.16 * w, 0.14 * h
        py = y0 + rng.uniform(0.0, 0.3) * (y1 - y0)
        draw.rectangle(
            [px - pw / 2, py, px + pw / 2, py + ph], fill=rng.choice([(30, 90, 180), (200, 40, 40), (240, 240, 240)])
        )


def _render(
    style: VehicleStyle, cam: Camera, size: tuple[int, int], rng: random.Random, occluder_p: float = 0.0
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """One photo of ``style`` by ``cam`` and the vehicle's box (fractions of the image)."""
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
    # The vehicle's box from the pasted alpha, so the demo can point at the vehicle.
    bbox = car.getchannel("A").getbbox() or (0, 0, cw, ch)
    box = (max(0, dx + bbox[0]) / w, max(0, dy + bbox[1]) / h, min(w, dx + bbox[2]) / w, min(h, dy + bbox[3]) / h)
    if rng.random() < occluder_p:
        _occlude(scene, box, rng)
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
    return scene, box


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
    occluder_p: float = 0.0,
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
        occluder_p: probability that a shot also has a bush, a bollard row or a sign post in
            front of the vehicle (besides the poles some cameras always have).
        seed: everything drawn depends only on it.

    Returns:
        The path of ``labels.csv`` (header ``path,id,camera,split``, paths relative to it).
        Beside it, ``boxes.json`` maps each of those paths to the vehicle's box
        ``[x0, y0, x1, y1]`` as fractions of the image's width and height.

    >>> import tempfile
    >>> csv_path = make_synthetic_dataset(tempfile.mkdtemp(), num_train_ids=4, num_test_ids=2,
    ...                                   num_cams=2, shots_per_cam=1, image_size=(24, 32))
    >>> csv_path.name
    'labels.csv'
    """
    if not 0.0 <= occluder_p <= 1.0:
        raise ValueError(f"occluder_p is a probability in [0, 1], got {occluder_p}")
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
    boxes: dict[str, list[float]] = {}
    for pid, style in enumerate(styles, start=1):
        test = pid > num_train_ids
        query_cams = set(rng.sample(range(num_cams), queries_per_id)) if test else set()
        for c, cam in enumerate(cams, start=1):
            for shot in range(shots_per_cam):
                # VeRi-style name: id_camera_shot, so files also read as a VeRi folder would.
                name = f"{pid:04d}_c{c:03d}_{shot:02d}.jpg"
                image, box = _render(style, cam, (wid, hgt), rng, occluder_p)
                image.save(root / "images" / name, quality=92)
                boxes[f"images/{name}"] = [round(v, 4) for v in box]
                split = "train" if not test else ("query" if shot == 0 and c - 1 in query_cams else "gallery")
                rows.append((f"images/{name}", pid, c, split))
    # Where the vehicle is in each image (x0, y0, x1, y1, fractions), for the demo's pictures.
    (root / "boxes.json").write_text(json.dumps(boxes))
    path = root / "labels.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "id", "camera", "split"])
        writer.writerows(rows)
    return path
