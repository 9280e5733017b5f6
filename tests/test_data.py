"""Dataset readers on fixtures in each exact on-disk format, image loading, transforms, P x K sampler."""

import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fnc.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CorruptImageError,
    ImageDataset,
    PKSampler,
    Record,
    build_transforms,
    holdout_identities,
    read_cityflow,
    read_csv,
    read_dataset,
    read_market1501,
    read_train_label_xml,
    read_veri776,
)


def _img(path: Path, mode: str = "RGB", color=(200, 100, 50)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "L":
        color = 128
    elif mode == "RGBA":
        color = (*color, 0)
    elif mode == "P":
        color = 3
    Image.new(mode, (16, 16), color).save(path)
    return path


# ----------------------------------------------------------------------------- VeRi-776


@pytest.fixture
def veri_root(tmp_path):
    root = tmp_path / "VeRi"
    for name in ["0002_c002_00030600_0.jpg", "0002_c003_00084020_1.jpg", "0010_c015_00012345_0.jpg"]:
        _img(root / "image_train" / name)
    _img(root / "image_query" / "0005_c001_00000100_0.jpg")
    for name in ["0005_c002_00000200_0.jpg", "0006_c001_00000300_0.jpg"]:
        _img(root / "image_test" / name)
    (root / "image_test" / "Thumbs.db").write_bytes(b"not an image")  # ignored: not an image extension
    return root


def test_veri776_reads_layout(veri_root):
    ds = read_veri776(veri_root)
    assert [(Path(r.path).name, r.pid, r.camid) for r in ds.train] == [
        ("0002_c002_00030600_0.jpg", 0, 2),
        ("0002_c003_00084020_1.jpg", 0, 3),
        ("0010_c015_00012345_0.jpg", 1, 15),
    ]
    assert ds.pid_map == {2: 0, 10: 1} and ds.num_train_pids == 2 and ds.num_train_cams == 3
    assert ds.query == [Record(str(veri_root / "image_query" / "0005_c001_00000100_0.jpg"), 5, 1)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(5, 2), (6, 1)]  # original ids kept
    assert "gallery" in ds.summary()


def test_veri776_unparsable_name_is_named(veri_root):
    _img(veri_root / "image_query" / "car_0005.jpg")
    with pytest.raises(ValueError, match=r"car_0005\.jpg") as e:
        read_veri776(veri_root)
    assert "image_query" in str(e.value)


def test_veri776_missing_and_empty_folders(veri_root):
    for p in (veri_root / "image_test").iterdir():
        p.unlink()
    with pytest.raises(ValueError, match="image_test.*empty"):
        read_veri776(veri_root)
    (veri_root / "image_test").rmdir()
    with pytest.raises(FileNotFoundError, match="image_test"):
        read_veri776(veri_root)


# ----------------------------------------------------------------------------- Market-1501


def test_market1501_junk_and_distractors(tmp_path):
    root = tmp_path / "Market"
    for name in [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s1_000100_01.jpg",
        "-1_c1s1_000401_03.jpg",
    ]:
        _img(root / "bounding_box_train" / name)
    _img(root / "query" / "0003_c1s1_000100_00.jpg")
    for name in ["0003_c2s1_000200_01.jpg", "0000_c1s1_000000_01.jpg", "-1_c3s1_000001_01.jpg"]:
        _img(root / "bounding_box_test" / name)
    ds = read_market1501(root)
    assert [(r.pid, r.camid) for r in ds.train] == [(0, 1), (0, 2), (1, 3)]  # junk -1 dropped
    assert ds.pid_map == {2: 0, 7: 1}
    assert [(r.pid, r.camid) for r in ds.query] == [(3, 1)]
    # Gallery keeps the distractor (0), drops junk (-1); sorted by file name.
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(0, 1), (3, 2)]


def test_market1501_unparsable_name(tmp_path):
    root = tmp_path / "Market"
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        _img(root / sub / "0002_c1s1_000451_03.jpg")
    _img(root / "bounding_box_train" / "unknown.jpg")
    with pytest.raises(ValueError, match=r"unknown\.jpg"):
        read_market1501(root)


# ----------------------------------------------------------------------------- CityFlow-ReID (AIC20)

# Six training images: vehicle 1 on cameras 1 and 2, vehicle 2 on camera 1, vehicle 7 on cameras 3, 4.
TRAIN_ITEMS = [
    ("000001.jpg", "0001", "c001"),
    ("000002.jpg", "0001", "c001"),
    ("000003.jpg", "0001", "c002"),
    ("000004.jpg", "0002", "c001"),
    ("000005.jpg", "0007", "c003"),
    ("000006.jpg", "0007", "c004"),
]


def _train_label_xml(items, encoding="gb2312") -> bytes:
    lines = [
        f'<?xml version="1.0" encoding="{encoding}"?>',
        '<TrainingImages Version="1.0">',
        # A non-ASCII comment, so the declared multi-byte encoding actually matters.
        "<!-- 车辆重识别 训练标签 -->",
        f'<Items number="{len(items)}">',
    ]
    lines += [f'<Item imageName="{n}" vehicleID="{v}" cameraID="{c}" />' for n, v, c in items]
    lines += ["</Items>", "</TrainingImages>"]
    return "\r\n".join(lines).encode(encoding)


@pytest.fixture
def cityflow_root(tmp_path):
    root = tmp_path / "AIC20_ReID"
    for name, _, _ in TRAIN_ITEMS:
        _img(root / "image_train" / name)
    (root / "train_label.xml").write_bytes(_train_label_xml(TRAIN_ITEMS))
    for name in ("000001.jpg", "000002.jpg"):
        _img(root / "image_query" / name)
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        _img(root / "image_test" / name)
    (root / "name_query.txt").write_text("000001.jpg\n000002.jpg\n")
    (root / "name_test.txt").write_text("000001.jpg\n000002.jpg\n000003.jpg\n")
    return root


def test_cityflow_gb2312_train_labels(cityflow_root):
    assert read_train_label_xml(cityflow_root / "train_label.xml")[0] == ("000001.jpg", 1, 1)
    ds = read_cityflow(cityflow_root)
    assert [(Path(r.path).name, r.pid, r.camid) for r in ds.train] == [
        ("000001.jpg", 0, 1),
        ("000002.jpg", 0, 1),
        ("000003.jpg", 0, 2),
        ("000004.jpg", 1, 1),
        ("000005.jpg", 2, 3),
        ("000006.jpg", 2, 4),
    ]
    assert ds.pid_map == {1: 0, 2: 1, 7: 2}
    assert ds.query == [] and ds.gallery == []  # test labels are private


def test_cityflow_holdout_one_query_per_identity_per_camera(cityflow_root):
    ds = read_cityflow(cityflow_root, holdout_ids=[1, 2])
    assert ds.pid_map == {7: 0}
    assert [(Path(r.path).name, r.pid, r.camid) for r in ds.query] == [("000001.jpg", 1, 1), ("000003.jpg", 1, 2)]
    # Vehicle 1's second camera-1 image is gallery; vehicle 2 has a single image: gallery only.
    assert [(Path(r.path).name, r.pid) for r in ds.gallery] == [("000002.jpg", 1), ("000004.jpg", 2)]
    by_count = read_cityflow(cityflow_root, holdout_ids=1, seed=3)
    assert by_count.num_train_pids == 2
    assert by_count.pid_map.keys().isdisjoint({r.pid for r in by_count.query + by_count.gallery})
    assert read_cityflow(cityflow_root, holdout_ids=1, seed=3).query == by_count.query  # seeded


def test_cityflow_label_file(cityflow_root, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "path,id,camera\n"
        "image_test/000003.jpg,5,c010\nimage_query/000002.jpg,6,c011\nimage_query/000001.jpg,5,c011\n"
        "image_test/000001.jpg,6,c010\nimage_test/000002.jpg,9,12\n"
    )
    ds = read_cityflow(cityflow_root, label_file=labels)
    # Order follows name_query.txt / name_test.txt, not the label file.
    assert [(Path(r.path).name, r.pid, r.camid) for r in ds.query] == [("000001.jpg", 5, 11), ("000002.jpg", 6, 11)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(6, 10), (9, 12), (5, 10)]
    assert all("image_test" in r.path for r in ds.gallery)


def test_cityflow_label_file_must_cover_name_lists(cityflow_root, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,id,camera\nimage_query/000001.jpg,5,1\nimage_test/000001.jpg,5,2\n")
    with pytest.raises(ValueError, match="name_query.txt"):
        read_cityflow(cityflow_root, label_file=labels)
    labels.write_text("path,id,camera\nimage_other/000001.jpg,5,1\n")
    with pytest.raises(ValueError, match=r"labels.csv:2.*image_query/<name>"):
        read_cityflow(cityflow_root, label_file=labels)
    with pytest.raises(ValueError, match="not both"):
        read_cityflow(cityflow_root, label_file=labels, holdout_ids=1)


def test_cityflow_missing_images_all_listed(cityflow_root):
    (cityflow_root / "image_train" / "000002.jpg").unlink()
    (cityflow_root / "image_train" / "000005.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"2 image\(s\) listed in .*train_label.xml") as e:
        read_cityflow(cityflow_root)
    assert "000002.jpg" in str(e.value) and "000005.jpg" in str(e.value)


@pytest.mark.parametrize(
    "xml, message",
    [
        (_train_label_xml(TRAIN_ITEMS)[:-30], "malformed XML"),
        (_train_label_xml([("000001.jpg", "0001", "east")]), "cameraID 'east'"),
        (_train_label_xml([("000001.jpg", "car", "c001")]), "vehicleID 'car'"),
        (_train_label_xml([]), "no <Item> elements"),
        (b'<?xml version="1.0" encoding="no-such-codec"?><TrainingImages/>', "unknown encoding"),
    ],
)
def test_cityflow_bad_train_label_xml_names_file(cityflow_root, xml, message):
    (cityflow_root / "train_label.xml").write_bytes(xml)
    with pytest.raises(ValueError, match=message) as e:
        read_cityflow(cityflow_root)
    assert "train_label.xml" in str(e.value)


def test_cityflow_utf8_without_declaration(tmp_path):
    path = tmp_path / "labels.xml"
    path.write_text(
        '<TrainingImages><Items><Item imageName="a.jpg" vehicleID="12" cameraID="c040"/></Items></TrainingImages>'
    )
    assert read_train_label_xml(path) == [("a.jpg", 12, 40)]


# ----------------------------------------------------------------------------- CSV


def _csv_fixture(tmp_path, body: str, images=("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg")) -> Path:
    for name in images:
        _img(tmp_path / "imgs" / name)
    path = tmp_path / "labels.csv"
    path.write_text(body)
    return path


def test_csv_with_splits_and_string_cameras(tmp_path):
    path = _csv_fixture(
        tmp_path,
        "path,id,camera,split\n"
        "imgs/a.jpg,10,north,train\nimgs/b.jpg,10,south,train\nimgs/c.jpg,12,north,train\n"
        "imgs/d.jpg,30,north,query\nimgs/e.jpg,30,south,test\n\n",
    )
    ds = read_csv(path)
    assert [(r.pid, r.camid) for r in ds.train] == [(0, 0), (0, 1), (1, 0)]
    assert ds.camera_names == {0: "north", 1: "south"} and ds.id_names == {}
    assert ds.train[0].path == str(tmp_path / "imgs" / "a.jpg")
    assert [(r.pid, r.camid) for r in ds.query] == [(30, 0)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(30, 1)]


def test_csv_string_ids_root_and_holdout(tmp_path):
    path = _csv_fixture(
        tmp_path,
        "path,id,camera\na.jpg,car_b,1\nb.jpg,car_b,2\nc.jpg,car_a,1\nd.jpg,car_c,1\ne.jpg,car_c,2\nf.jpg,car_c,2\n",
        images=("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"),
    )
    ds = read_csv(path, root=tmp_path / "imgs")
    assert ds.id_names == {0: "car_a", 1: "car_b", 2: "car_c"} and ds.num_train_pids == 3
    held = read_csv(path, root=tmp_path / "imgs", holdout_ids=[2])
    assert held.num_train_pids == 2
    assert [(Path(r.path).name, r.camid) for r in held.query] == [("d.jpg", 1), ("e.jpg", 2)]
    assert [Path(r.path).name for r in held.gallery] == ["f.jpg"]
    # car_b has one image per camera: as a held-out id nothing of it would be left to find.
    with pytest.raises(ValueError, match=r"held-out identities \[1\] have exactly one image per camera"):
        read_csv(path, root=tmp_path / "imgs", holdout_ids=[1])


def test_csv_missing_files_listed_and_truncated(tmp_path):
    rows = "".join(f"imgs/missing_{i:03d}.jpg,{i},1\n" for i in range(30))
    path = _csv_fixture(tmp_path, "path,id,camera\nimgs/a.jpg,1,1\n" + rows)
    with pytest.raises(FileNotFoundError, match=r"30 image\(s\) listed in .*labels.csv") as e:
        read_csv(path)
    msg = str(e.value)
    assert "missing_000.jpg" in msg and "missing_019.jpg" in msg and "missing_029.jpg" not in msg
    assert "and 10 more" in msg


@pytest.mark.parametrize(
    "body, error, message",
    [
        ("file,id,camera\nimgs/a.jpg,1,1\n", ValueError, r"lacks column\(s\) \['path'\]"),
        ("path,id,camera\nimgs/a.jpg,,1\n", ValueError, r"labels.csv:2: empty value in column 'id'"),
        ("path,id,camera,split\nimgs/a.jpg,1,1,val\n", ValueError, r"labels.csv:2: unknown split 'val'"),
        ("path,id,camera\n", ValueError, "no rows"),
        ("path,id,camera,split\nimgs/a.jpg,1,1,query\n", ValueError, "train split .*labels.csv.* is empty"),
        ("path,id,camera,split\nimgs/a.jpg,1,1,train\nimgs/b.jpg,2,1,query\n", ValueError, "gallery split"),
        ("path,id,camera\nimgs/a.jpg,1\n", ValueError, r"labels.csv:2: expected 3 columns"),
    ],
)
def test_csv_bad_input_names_file(tmp_path, body, error, message):
    with pytest.raises(error, match=message):
        read_csv(_csv_fixture(tmp_path, body))


def test_read_dataset_dispatch(tmp_path, veri_root):
    assert read_dataset(f"veri:{veri_root}").num_train_pids == 2
    path = _csv_fixture(tmp_path, "path,id,camera\nimgs/a.jpg,1,1\n")
    assert len(read_dataset(f"csv:{path}").train) == 1
    with pytest.raises(ValueError, match=r"\['cityflow', 'csv', 'market', 'vehicleid', 'veri', 'veriwild'\]"):
        read_dataset(f"duke:{veri_root}")
    with pytest.raises(ValueError, match="FORMAT:PATH"):
        read_dataset(str(veri_root).lstrip("/"))


def test_holdout_needs_identities_left():
    recs = [Record(f"{p}.jpg", p, 0) for p in range(3)]
    with pytest.raises(ValueError, match="cannot hold out 3 of 3"):
        holdout_identities(recs, 3)
    with pytest.raises(ValueError, match=r"\[9\]"):
        holdout_identities(recs, [9])


# ----------------------------------------------------------------------------- images and transforms


def test_image_dataset_converts_modes(tmp_path):
    records = [
        Record(str(_img(tmp_path / f"{mode}.png", mode)), i, 0) for i, mode in enumerate(["L", "RGBA", "P", "RGB"])
    ]
    ds = ImageDataset(records, build_transforms((32, 24), train=False))
    for i in range(len(ds)):
        image, pid, camid = ds[i]
        assert image.shape == (3, 32, 24) and image.dtype == torch.float32 and pid == i


def test_corrupt_image_raises_with_path(tmp_path):
    bad = tmp_path / "0001_c001_broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    ds = ImageDataset([Record(str(bad), 1, 1)])
    with pytest.raises(CorruptImageError, match="0001_c001_broken.jpg"):
        ds[0]


def test_truncated_image_raises(tmp_path):
    good = _img(tmp_path / "good.jpg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CorruptImageError, match="truncated.jpg"):
        ImageDataset([Record(str(truncated), 0, 0)])[0]


def test_skip_corrupt_substitutes_same_identity_and_counts(tmp_path, caplog):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    records = [
        Record(str(_img(tmp_path / "x.jpg")), 0, 0),
        Record(str(bad), 1, 2),
        Record(str(_img(tmp_path / "y.jpg")), 1, 3),
    ]
    ds = ImageDataset(records, build_transforms((8, 8), train=False), skip_corrupt=True)
    with caplog.at_level(logging.WARNING, logger="fnc.data.dataset"):
        image, pid, camid = ds[1]
    assert (pid, camid) == (1, 3) and image.shape == (3, 8, 8)
    assert ds.skipped == {str(bad)}
    assert any("bad.jpg" in m for m in caplog.messages)


def test_transforms_eval_normalises_and_train_augments():
    img = Image.new("RGB", (20, 10), (255, 0, 128))
    out = build_transforms((6, 12), train=False)(img)
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), IMAGENET_MEAN, IMAGENET_STD)]
    assert torch.allclose(out[:, 3, 6], torch.tensor(expected), atol=1e-5)
    torch.manual_seed(0)
    train = build_transforms((24, 32), train=True, erase_p=1.0)
    outs = torch.stack([train(img) for _ in range(4)])
    assert outs.shape == (4, 3, 24, 32)
    # Padding and erasing both leave values that a plain resize of this constant image cannot.
    assert not torch.allclose(outs[0], build_transforms((24, 32), train=False)(img))
    with pytest.raises(ValueError, match="input_size"):
        build_transforms((0, 5))


# ----------------------------------------------------------------------------- P x K sampler


def _pids():
    # 10 identities with 1..10 images each (55 items); identity 0 has fewer than K = 4.
    return [pid for pid in range(10) for _ in range(pid + 1)]


def _batches(sampler):
    expected = len(sampler)  # before iterating: iteration consumes a resume point
    idx = list(sampler)
    b = sampler.local_batch_size
    assert len(idx) == expected and len(idx) % b == 0
    return [idx[i : i + b] for i in range(0, len(idx), b)]


def test_pk_sampler_batches_are_p_by_k():
    pids = _pids()
    sampler = PKSampler(pids, num_instances=4, batch_size=12, seed=0)
    batches = _batches(sampler)
    assert len(batches) >= 3
    for batch in batches:
        counts = Counter(pids[i] for i in batch)
        assert len(counts) == 3 and set(counts.values()) == {4}
    # Identity 0 has one image, fewer than K: it is sampled with replacement, K copies in a batch.
    seen = set()
    for epoch in range(4):
        sampler.set_epoch(epoch)
        seen |= {pids[i] for i in sampler}
    assert 0 in seen


def test_pk_sampler_deterministic_per_seed_and_epoch():
    a = PKSampler(_pids(), 4, 12, seed=1)
    b = PKSampler(_pids(), 4, 12, seed=1)
    first = list(a)
    assert first == list(b) == list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(PKSampler(_pids(), 4, 12, seed=2)) != first


def test_pk_sampler_splits_global_batch_over_ranks():
    pids = _pids()
    whole = _batches(PKSampler(pids, 4, 16, seed=5))
    parts = [_batches(PKSampler(pids, 4, 16, seed=5, num_replicas=2, rank=r)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for g, p0, p1 in zip(whole, *parts):
        assert p0 + p1 == g
        assert len({pids[i] for i in p0}) == 2 and not {pids[i] for i in p0} & {pids[i] for i in p1}


def test_pk_sampler_resume_continues_sequence():
    pids = _pids()
    ref = PKSampler(pids, 4, 8, seed=3, num_replicas=2, rank=1)
    ref.set_epoch(2)
    full = _batches(ref)
    run = PKSampler(pids, 4, 8, seed=3, num_replicas=2, rank=1)
    run.set_epoch(2)
    it = iter(run)
    for _ in range(2 * run.local_batch_size):
        next(it)
    state = run.state_dict()
    assert state["batches_done"] == 2 and state["epoch"] == 2
    resumed = PKSampler(pids, 4, 8, seed=99, num_replicas=2, rank=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the usual per-epoch call must not lose the resume point
    assert len(resumed) == (len(full) - 2) * resumed.local_batch_size
    assert _batches(resumed) == full[2:]
    assert _batches(resumed) == full  # the resume point is used once
    # An explicit count (what the training loop finished) overrides the prefetch-ahead counter.
    assert run.state_dict(batches_done=1)["batches_done"] == 1
    with pytest.raises(ValueError, match="batch_size"):
        PKSampler(pids, 4, 16, num_replicas=1, rank=0).load_state_dict(state)


def test_pk_sampler_validates_arguments():
    with pytest.raises(ValueError, match="multiple of num_instances"):
        PKSampler(_pids(), num_instances=4, batch_size=10)
    with pytest.raises(ValueError, match="only 10"):
        PKSampler(_pids(), num_instances=4, batch_size=64)
    with pytest.raises(ValueError, match="num_instances \\* num_replicas = 12"):
        PKSampler(_pids(), num_instances=4, batch_size=8, num_replicas=3, rank=0)
    with pytest.raises(ValueError, match="rank"):
        PKSampler(_pids(), num_instances=4, batch_size=8, num_replicas=2, rank=2)


def test_dataloader_end_to_end(tmp_path):
    records = [Record(str(_img(tmp_path / f"{pid}_{i}.jpg")), pid, i % 2) for pid in range(4) for i in range(3)]
    sampler = PKSampler(records, num_instances=2, batch_size=4, seed=0)
    loader = DataLoader(
        ImageDataset(records, build_transforms((16, 8))), batch_size=sampler.local_batch_size, sampler=sampler
    )
    images, pids, camids = next(iter(loader))
    assert images.shape == (4, 3, 16, 8) and pids.tolist()[0] == pids.tolist()[1]
    assert len(loader) == len(sampler) // 4


def test_seeded_pk_sampler_gives_each_place_its_own_seed_on_every_rank(tmp_path):
    pids = [i // 4 for i in range(32)]
    plain = PKSampler(pids, 4, 16, seed=3)
    seeded = PKSampler(pids, 4, 16, seed=3, seeded=True)
    plain.set_epoch(1)
    seeded.set_epoch(1)
    pairs = list(seeded)
    assert [i for i, _ in pairs] == list(plain)
    # Two ranks see the same seeds for the same places as one process does.
    halves = []
    for rank in (0, 1):
        part = PKSampler(pids, 4, 16, seed=3, num_replicas=2, rank=rank, seeded=True)
        part.set_epoch(1)
        halves.append(list(part))
    assert halves[0] + halves[1] == pairs[:8] + pairs[16:24] + pairs[8:16] + pairs[24:32]
    # The image's augmentation is drawn from its seed, and the caller's RNG stream is left alone.
    _img(tmp_path / "a.jpg")
    ds = ImageDataset([Record(str(tmp_path / "a.jpg"), 0, 0)], build_transforms((8, 8), erase_p=0.9, padding=3))
    state = torch.get_rng_state()
    first, again, other = ds[(0, 11)][0], ds[(0, 11)][0], ds[(0, 12)][0]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again) and not torch.equal(first, other)
