"""VehicleID and VERI-Wild readers on tiny fixtures in the released on-disk layouts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from fnc.data import read_dataset, read_vehicleid, read_veriwild, vehicleid_trials


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)


# --- VehicleID -------------------------------------------------------------------------------

# train: ids 10, 11 (3 images each); test_list_800: ids 20 (4 images), 21 (3), 22 (1).
_VID_TRAIN = [("0000001", 10), ("0000002", 10), ("0000003", 10), ("0000004", 11), ("0000005", 11), ("0000006", 11)]
_VID_TEST = [
    ("0000101", 20),
    ("0000102", 20),
    ("0000103", 20),
    ("0000104", 20),
    ("0000105", 21),
    ("0000106", 21),
    ("0000107", 21),
    ("0000108", 22),
]


@pytest.fixture
def vehicleid_root(tmp_path):
    root = tmp_path / "VehicleID"
    for imgid, _ in _VID_TRAIN + _VID_TEST:
        _img(root / "image" / f"{imgid}.jpg")
    split = root / "train_test_split"
    split.mkdir()
    (split / "train_list.txt").write_text("".join(f"{i} {v}\n" for i, v in _VID_TRAIN))
    (split / "test_list_800.txt").write_text("".join(f"{i} {v}\n" for i, v in _VID_TEST))
    (split / "test_list_1600.txt").write_text("".join(f"{i} {v}\n" for i, v in _VID_TEST[:4]))
    return root


def _paths(records):
    return [Path(r.path).name for r in records]


def test_vehicleid_reads_layout_one_gallery_image_per_identity(vehicleid_root):
    ds = read_dataset(f"vehicleid:{vehicleid_root}", test_size=800, seed=0)
    assert ds.protocol == "veri" and ds.num_train_pids == 2 and ds.pid_map == {10: 0, 11: 1}
    assert sorted(_paths(ds.train)) == [f"{i}.jpg" for i, _ in _VID_TRAIN]
    assert Counter(r.pid for r in ds.gallery) == {20: 1, 21: 1, 22: 1}
    assert Counter(r.pid for r in ds.query) == {20: 3, 21: 2}  # the single image of 22 is gallery only
    assert sorted(_paths(ds.query + ds.gallery)) == [f"{i}.jpg" for i, _ in _VID_TEST]
    # Every image is its own camera, so the same-id-same-camera removal removes nothing.
    cams = [r.camid for r in ds.train + ds.query + ds.gallery]
    assert len(set(cams)) == len(cams)
    assert {r.camid for r in ds.query}.isdisjoint(r.camid for r in ds.gallery)


def test_vehicleid_draws_are_reproducible_and_differ_across_seeds(vehicleid_root):
    draws = {seed: _paths(read_vehicleid(vehicleid_root, seed=seed).gallery) for seed in range(8)}
    assert draws[3] == _paths(read_vehicleid(vehicleid_root, seed=3).gallery)
    assert len({tuple(g) for g in draws.values()}) > 1


def test_vehicleid_trials_equal_single_reads(vehicleid_root):
    trials = vehicleid_trials(vehicleid_root, test_size=800, trials=4)
    assert len(trials) == 4
    for seed, ds in enumerate(trials):
        one = read_vehicleid(vehicleid_root, test_size=800, seed=seed)
        assert (ds.query, ds.gallery, ds.train) == (one.query, one.gallery, one.train)
    with pytest.raises(ValueError, match="trials must be a positive integer"):
        vehicleid_trials(vehicleid_root, trials=0)


def test_vehicleid_other_test_size(vehicleid_root):
    ds = read_vehicleid(vehicleid_root, test_size=1600)
    assert len(ds.gallery) == 1 and len(ds.query) == 3


def test_vehicleid_absent_test_size_names_the_sizes_that_exist(vehicleid_root):
    with pytest.raises(FileNotFoundError, match=r"test_list_2400\.txt.*test_size=800, 1600"):
        read_vehicleid(vehicleid_root, test_size=2400)


def test_vehicleid_missing_split_files_listed_in_one_error(vehicleid_root):
    (vehicleid_root / "train_test_split" / "train_list.txt").unlink()
    with pytest.raises(FileNotFoundError) as err:
        read_vehicleid(vehicleid_root, test_size=2400)
    assert "train_list.txt" in str(err.value) and "test_list_2400.txt" in str(err.value)


def test_vehicleid_malformed_line_names_file_and_line(vehicleid_root):
    (vehicleid_root / "train_test_split" / "test_list_800.txt").write_text("0000101 20\n\n0000102\n")
    with pytest.raises(ValueError, match=r"test_list_800\.txt:3: expected '<image id> <vehicle id>'"):
        read_vehicleid(vehicleid_root)


def test_vehicleid_missing_images_listed(vehicleid_root):
    (vehicleid_root / "image" / "0000105.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)1 image\(s\) listed in .*test_list_800\.txt.*0000105\.jpg"):
        read_vehicleid(vehicleid_root)


# --- VERI-Wild -------------------------------------------------------------------------------

# (vid, imgid, camera): train ids 1, 2; test ids 7, 8.
_WILD_TRAIN = [("00001", "000001", 3), ("00001", "000002", 5), ("00002", "000003", 3), ("00002", "000004", 4)]
_WILD_GALLERY = [("00007", "000010", 1), ("00007", "000011", 2), ("00008", "000012", 1), ("00008", "000013", 9)]
_WILD_QUERY = [("00007", "000014", 2), ("00008", "000015", 1)]


def _veriwild(root: Path, alt_names: bool = False) -> Path:
    split = root / "train_test_split"
    split.mkdir(parents=True)
    rows = _WILD_TRAIN + _WILD_GALLERY + _WILD_QUERY
    for vid, imgid, _ in rows:
        _img(root / "images" / vid / f"{imgid}.jpg")
    info = ["id/image;Camera ID;Time;Model;Type;Color"]
    info += [f"{vid}/{imgid};{cam};2018-03-11 11:40:10;Changan;MPV;white" for vid, imgid, cam in rows]
    (split / "vehicle_info.txt").write_text("\n".join(info) + "\n")

    def lines(records, label_base=None):
        if not alt_names:
            return "".join(f"{vid}/{imgid}\n" for vid, imgid, _ in records)
        # The alternative copies: "vid/imgid.jpg <label> <camera>", labels re-numbered.
        return "".join(f"{vid}/{imgid}.jpg {i % 2} {cam}\n" for i, (vid, imgid, cam) in enumerate(records))

    train_name, gallery_name, query_name = (
        ("train_list_start0.txt", "test_3000_id.txt", "test_3000_id_query.txt")
        if alt_names
        else ("train_list.txt", "test_3000.txt", "test_3000_query.txt")
    )
    (split / train_name).write_text(lines(_WILD_TRAIN))
    (split / gallery_name).write_text(lines(_WILD_GALLERY))
    (split / query_name).write_text(lines(_WILD_QUERY))
    return root


@pytest.fixture
def veriwild_root(tmp_path):
    return _veriwild(tmp_path / "VERI-Wild")


def test_veriwild_reads_layout(veriwild_root):
    ds = read_dataset(f"veriwild:{veriwild_root}", test_size=3000)
    assert ds.protocol == "veri" and ds.pid_map == {1: 0, 2: 1}
    assert [(Path(r.path).parent.name, Path(r.path).name, r.pid, r.camid) for r in ds.train] == [
        ("00001", "000001.jpg", 0, 3),
        ("00001", "000002.jpg", 0, 5),
        ("00002", "000003.jpg", 1, 3),
        ("00002", "000004.jpg", 1, 4),
    ]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(7, 1), (7, 2), (8, 1), (8, 9)]
    assert [(r.pid, r.camid) for r in ds.query] == [(7, 2), (8, 1)]


def test_veriwild_alternative_file_names_give_the_same_dataset(tmp_path, veriwild_root):
    alt = read_veriwild(_veriwild(tmp_path / "alt", alt_names=True))
    ref = read_veriwild(veriwild_root)
    for split in ("train", "query", "gallery"):
        got = [(Path(r.path).relative_to(tmp_path / "alt"), r.pid, r.camid) for r in getattr(alt, split)]
        want = [(Path(r.path).relative_to(veriwild_root), r.pid, r.camid) for r in getattr(ref, split)]
        assert got == want


def test_veriwild_absent_test_size_names_the_sizes_that_exist(veriwild_root):
    with pytest.raises(FileNotFoundError, match=r"test_5000\.txt or .*test_5000_id\.txt.*test_size=3000\)"):
        read_veriwild(veriwild_root, test_size=5000)
    with pytest.raises(ValueError, match=r"test_size must be one of \(3000, 5000, 10000\)"):
        read_veriwild(veriwild_root, test_size=800)


def test_veriwild_missing_split_files_listed_in_one_error(veriwild_root):
    (veriwild_root / "train_test_split" / "vehicle_info.txt").unlink()
    (veriwild_root / "train_test_split" / "train_list.txt").unlink()
    with pytest.raises(FileNotFoundError) as err:
        read_veriwild(veriwild_root)
    assert "train_list_start0.txt" in str(err.value) and "vehicle_info.txt" in str(err.value)


@pytest.mark.parametrize(
    ("file", "body", "message"),
    [
        (
            "vehicle_info.txt",
            "header\n00001/000001;3;t;m;t;c\n00001/000002\n",
            r"vehicle_info\.txt:3: expected 'vid/imgid;camera",
        ),
        ("test_3000.txt", "00007/000010\nnot a path\n", r"test_3000\.txt:2: expected 'vid/imgid'"),
        (
            "test_3000.txt",
            "00007/000010\n00007/999999\n",
            r"test_3000\.txt:2: image 999999 is not in .*vehicle_info\.txt",
        ),
        (
            "test_3000_query.txt",
            "00008/000014\n",
            r"test_3000_query\.txt:1: image 000014 is listed under vehicle 8, .* says 7",
        ),
    ],
)
def test_veriwild_malformed_line_names_file_and_line(veriwild_root, file, body, message):
    (veriwild_root / "train_test_split" / file).write_text(body)
    with pytest.raises(ValueError, match=message):
        read_veriwild(veriwild_root)


def test_veriwild_missing_images_listed(veriwild_root):
    (veriwild_root / "images" / "00008" / "000015.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)test_3000_query\.txt.*000015\.jpg"):
        read_veriwild(veriwild_root)


def test_vehicleid_veri_protocol_scores_every_query_with_its_one_gallery_image(vehicleid_root):
    import numpy as np

    from fnc.evaluation import evaluate

    ds = read_vehicleid(vehicleid_root)
    q_pids = np.array([r.pid for r in ds.query])
    g_pids = np.array([r.pid for r in ds.gallery])
    # The true match nearest: nothing is removed, so every query scores rank-1 and AP 1.
    dist = (q_pids[:, None] != g_pids[None, :]).astype(np.float32)
    res = evaluate(
        dist,
        q_pids,
        g_pids,
        np.array([r.camid for r in ds.query]),
        np.array([r.camid for r in ds.gallery]),
        protocol=ds.protocol,
    )
    assert res.num_valid == len(ds.query) == 5
    assert res.mAP == 1.0 and res.cmc[0] == 1.0
