"""A tiny learnable re-ID dataset written to disk in every supported format, for the training tests.

Each "vehicle" is a two-colour block (body colour over roof colour, identity-specific, with a
stripe) on a camera-specific background, under camera-specific brightness, at a random position,
with pixel noise. Identity is visible but an untrained network is dominated by the camera's
background and brightness, so training must learn to ignore them. Query / gallery identities are
disjoint from training ones, as in real re-ID benchmarks.
"""

from __future__ import annotations

import colorsys
import csv
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_IDS = tuple(range(1, 13))
TEST_IDS = tuple(range(101, 107))
CAMERAS = (1, 2, 3)
SIZE = 32
_BACKGROUNDS = {1: (40, 40, 40), 2: (200, 200, 170), 3: (60, 110, 60)}
_BRIGHTNESS = {1: 0.75, 2: 1.2, 3: 1.0}


def _colours(pid: int) -> tuple[np.ndarray, np.ndarray, int]:
    # Golden-ratio hues spread identities over the colour wheel, so unseen ids lie between seen ones.
    h1 = (pid * 0.618034) % 1.0
    h2 = (pid * 0.381966 + 0.5) % 1.0
    body = np.array(colorsys.hsv_to_rgb(h1, 0.9, 0.95)) * 255
    roof = np.array(colorsys.hsv_to_rgb(h2, 0.8, 0.8)) * 255
    return body, roof, pid % 3


def toy_image(pid: int, cam: int, k: int, size: int = SIZE) -> Image.Image:
    """Image ``k`` of identity ``pid`` seen by camera ``cam`` (deterministic)."""
    rng = np.random.default_rng([pid, cam, k])
    img = np.empty((size, size, 3), np.float64)
    img[:] = _BACKGROUNDS[cam]
    body, roof, stripe = _colours(pid)
    h, w = size // 2, (size * 5) // 8
    top = int(rng.integers(2, size - h - 1))
    left = int(rng.integers(1, size - w - 1))
    img[top : top + h, left : left + w] = body
    img[top : top + h // 3, left + w // 6 : left + w - w // 6] = roof
    if stripe:
        row = top + h // 2 + (stripe - 1) * 2
        img[row : row + 2, left : left + w] = 255 - body
    img = img * _BRIGHTNESS[cam] + rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _split_images(n_train: int, n_test: int) -> dict[str, list[tuple[int, int, int]]]:
    """(pid, cam, k) per split: each test identity has 1 query and ``n_test - 1`` gallery images per camera."""
    out: dict[str, list[tuple[int, int, int]]] = {"train": [], "query": [], "gallery": []}
    for pid in TRAIN_IDS:
        for cam in CAMERAS:
            out["train"] += [(pid, cam, k) for k in range(n_train)]
    for pid in TEST_IDS:
        for cam in CAMERAS:
            out["query"].append((pid, cam, 0))
            out["gallery"] += [(pid, cam, k) for k in range(1, n_test)]
    return out


def write_veri(root: Path, n_train: int = 2, n_test: int = 3, size: int = SIZE) -> str:
    """VeRi-776 layout (``image_train`` / ``image_query`` / ``image_test``); returns ``"veri:ROOT"``."""
    folders = {"train": "image_train", "query": "image_query", "gallery": "image_test"}
    for split, items in _split_images(n_train, n_test).items():
        (root / folders[split]).mkdir(parents=True, exist_ok=True)
        for pid, cam, k in items:
            toy_image(pid, cam, k, size).save(root / folders[split] / f"{pid:04d}_c{cam:03d}_{k:08d}_0.jpg", quality=95)
    return f"veri:{root}"


def write_market(root: Path, n_train: int = 2, n_test: int = 3, size: int = SIZE) -> str:
    """Market-1501 layout; returns ``"market:ROOT"``."""
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for split, items in _split_images(n_train, n_test).items():
        (root / folders[split]).mkdir(parents=True, exist_ok=True)
        for pid, cam, k in items:
            toy_image(pid, cam, k, size).save(root / folders[split] / f"{pid:04d}_c{cam}s1_{k:06d}_00.jpg", quality=95)
    return f"market:{root}"


def write_cityflow(root: Path, n_train: int = 2, n_test: int = 3, size: int = SIZE) -> tuple[str, Path]:
    """AIC20 track-2 layout with ``train_label.xml`` (gb2312) and a query/test label CSV.

    Returns:
        ``("cityflow:ROOT", label_file)``.
    """
    splits = _split_images(n_train, n_test)
    for folder in ("image_train", "image_query", "image_test"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    items = []
    for i, (pid, cam, k) in enumerate(splits["train"], 1):
        name = f"{i:06d}.jpg"
        toy_image(pid, cam, k, size).save(root / "image_train" / name, quality=95)
        items.append(f'<Item imageName="{name}" vehicleID="{pid:04d}" cameraID="c{cam:03d}" />')
    xml = '<?xml version="1.0" encoding="gb2312"?>\n<TrainingImages Version="1.0">\n<Items number="%d">\n%s\n</Items>\n</TrainingImages>\n'
    (root / "train_label.xml").write_bytes((xml % (len(items), "\n".join(items))).encode("gb2312"))
    label_file = root / "eval_labels.csv"
    rows = [("path", "id", "camera")]
    for split, folder, listing in (
        ("query", "image_query", "name_query.txt"),
        ("gallery", "image_test", "name_test.txt"),
    ):
        names = []
        for i, (pid, cam, k) in enumerate(splits[split], 1):
            name = f"{i:06d}.jpg"
            toy_image(pid, cam, k, size).save(root / folder / name, quality=95)
            names.append(name)
            rows.append((f"{folder}/{name}", str(pid), f"c{cam:03d}"))
        (root / listing).write_text("\n".join(names) + "\n")
    with label_file.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return f"cityflow:{root}", label_file


def write_csv(root: Path, n_train: int = 2, n_test: int = 3, size: int = SIZE) -> str:
    """Generic CSV (``path,id,camera,split``) with string ids and camera names; returns ``"csv:FILE"``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = [("path", "id", "camera", "split")]
    for split, items in _split_images(n_train, n_test).items():
        for pid, cam, k in items:
            name = f"{split}_{pid}_{cam}_{k}.png"
            toy_image(pid, cam, k, size).save(root / "images" / name)
            rows.append((f"images/{name}", f"car-{pid}", f"cam-{cam}", split))
    path = root / "labels.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return f"csv:{path}"


WRITERS = {"veri": write_veri, "market": write_market, "csv": write_csv}


def write_vehicleid(root: Path, n_train: int = 2, n_test: int = 3, size: int = SIZE, test_size: int = 800) -> str:
    """PKU VehicleID layout (``image/<imgid>.jpg``, ``train_test_split/train_list.txt`` and
    ``test_list_<test_size>.txt``, lines ``imgid vid``); returns ``"vehicleid:ROOT"``.

    Each identity has ``n_train`` (train) or ``n_test`` (test) images per camera; VehicleID records
    no camera, so the cameras only vary the pictures.
    """
    (root / "image").mkdir(parents=True, exist_ok=True)
    (root / "train_test_split").mkdir(exist_ok=True)
    imgid = 0
    lists: dict[str, list[str]] = {"train_list.txt": [], f"test_list_{test_size}.txt": []}
    for listing, pids, n in (("train_list.txt", TRAIN_IDS, n_train), (f"test_list_{test_size}.txt", TEST_IDS, n_test)):
        for pid in pids:
            for cam in CAMERAS:
                for k in range(n):
                    imgid += 1
                    toy_image(pid, cam, k, size).save(root / "image" / f"{imgid:07d}.jpg", quality=95)
                    lists[listing].append(f"{imgid:07d} {pid}\n")
    for name, lines in lists.items():
        (root / "train_test_split" / name).write_text("".join(lines))
    return f"vehicleid:{root}"


# The smallest CPU training run the CLI tests share (each adds what its test is about).
TINY_TRAIN = [
    "--batch-size",
    "8",
    "--num-instances",
    "2",
    "--input-size",
    "32",
    "32",
    "--no-pretrained",
    "--device",
    "cpu",
]
