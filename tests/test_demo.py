"""The offline demo: the synthetic dataset it draws and ``run_demo(quick=True)`` end to end."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from PIL import Image

from fnc.data import read_dataset, read_veri776
from fnc.demo import make_synthetic_dataset, run_demo
from fnc.demo.run import position_on_vehicle, summary

SMALL = dict(num_train_ids=4, num_test_ids=3, num_cams=2, shots_per_cam=2, image_size=(24, 32), queries_per_id=1)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _digest(folder) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_synthetic_dataset_reads_back_with_disjoint_ids(tmp_path):
    csv_path = make_synthetic_dataset(tmp_path, **SMALL)
    ds = read_dataset(f"csv:{csv_path}")
    assert len(ds.train) == 4 * 2 * 2 and ds.num_train_pids == 4 and ds.num_train_cams == 2
    assert len(ds.query) == 3 and len(ds.gallery) == 3 * 4 - 3
    assert not {r.pid for r in ds.query} & set(ds.pid_map)  # test vehicles are never trained on
    # Every query has a match from another camera, so the VeRi protocol leaves it something to find.
    for q in ds.query:
        assert any(g.pid == q.pid and g.camid != q.camid for g in ds.gallery)
    with Image.open(ds.train[0].path) as im:
        assert im.size == (32, 24) and im.mode == "RGB"
    # The painter's vehicle boxes: one per image, inside it, around a vehicle-sized area.
    boxes = json.loads((csv_path.parent / "boxes.json").read_text())
    assert len(boxes) == len(ds.train) + len(ds.query) + len(ds.gallery)
    for x0, y0, x1, y1 in boxes.values():
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and (x1 - x0) * (y1 - y0) > 0.1
    assert position_on_vehicle(boxes["images/0001_c001_00.jpg"], (3, 4)) in {(r, c) for r in range(3) for c in range(4)}


def test_synthetic_dataset_is_seeded(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", **SMALL, seed=3)
    b = make_synthetic_dataset(tmp_path / "b", **SMALL, seed=3)
    c = make_synthetic_dataset(tmp_path / "c", **SMALL, seed=4)
    assert _digest(a.parent) == _digest(b.parent) != _digest(c.parent)


def test_synthetic_file_names_are_veri_style(tmp_path):
    # id_camera_shot names: the images folder also reads as VeRi-776 does.
    images = make_synthetic_dataset(tmp_path, **SMALL).parent / "images"
    for split in ("image_train", "image_query", "image_test"):
        (tmp_path / "veri" / split).mkdir(parents=True)
    for path in sorted(images.iterdir()):
        (tmp_path / "veri" / "image_train" / path.name).write_bytes(path.read_bytes())
    (tmp_path / "veri" / "image_query" / "0005_c001_00.jpg").write_bytes((images / "0005_c001_00.jpg").read_bytes())
    (tmp_path / "veri" / "image_test" / "0005_c002_00.jpg").write_bytes((images / "0005_c002_00.jpg").read_bytes())
    ds = read_veri776(tmp_path / "veri")
    assert ds.num_train_pids == 7 and ds.num_train_cams == 2


def test_synthetic_dataset_rejects_impossible_splits(tmp_path):
    with pytest.raises(ValueError, match="queries_per_id"):
        make_synthetic_dataset(tmp_path, num_cams=2, queries_per_id=3)
    with pytest.raises(ValueError, match="gallery"):
        make_synthetic_dataset(tmp_path, num_cams=1, shots_per_cam=1, queries_per_id=1)
    with pytest.raises(ValueError, match="occluder_p"):
        make_synthetic_dataset(tmp_path, occluder_p=1.5)


def test_quick_demo_trains_evaluates_and_draws(tmp_path):
    lines: list[str] = []
    result = run_demo(
        tmp_path / "demo",
        quick=True,
        progress=False,
        save_model=True,
        echo=lambda *a: lines.append(" ".join(map(str, a))),
    )
    for key in ("before", "after"):
        for metric in ("mAP", "rank1", "mAP_rerank", "rank1_rerank"):
            assert 0.0 <= result[key][metric] <= 1.0
    assert result["epochs"] == 1 and result["seconds"] > 0
    numbers = json.loads(json.dumps(summary(result)))
    assert set(numbers) == {"untrained", "trained", "reranked", "seconds"}
    for key in ("untrained", "trained", "reranked"):
        assert set(numbers[key]) == {"mAP", "rank1", "rank5", "mINP"}
        assert all(0.0 <= v <= 1.0 for v in numbers[key].values())
    assert numbers["reranked"]["mAP"] == result["after"]["mAP_rerank"]
    text = "\n".join(lines)
    assert "untrained" in text and "trained" in text and str(result["ranked_list"]) in text
    # The pictures: 2 queries x (untrained, trained) ranked rows, and 2 attention rows.
    with Image.open(result["ranked_list"]) as im:
        assert im.format == "PNG" and im.width > 600 and im.height > 4 * 72
    with Image.open(result["attention_maps"]) as im:
        assert im.format == "PNG" and im.height > 2 * 64
    # The saved model loads back and embeds at the demo's input size, which its config records.
    import fnc

    model = fnc.create_model(checkpoint_path=result["model"])
    assert tuple(model.pretrained_cfg.input_size) == (3, 32, 48)
    feats = fnc.extract(model, [result["ranked_list"]], progress=False)
    assert feats.shape == (1, 1536)
