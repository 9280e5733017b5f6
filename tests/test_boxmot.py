"""fnc-reid models as boxmot's appearance model, tested with the real boxmot (the test extra).

boxmot is AGPL-3.0; only these tests and the tracking example import it, never the package.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import boxmot
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fnc.inference import extract
from fnc.integrations.boxmot import AppearanceModel
from fnc.models import create_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "track_vehicles.py"
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _load_example():
    spec = importlib.util.spec_from_file_location("track_vehicles", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


track_vehicles = _load_example()


class CountingAppearanceModel(AppearanceModel):
    """The real AppearanceModel, recording what the tracker asks of it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[np.ndarray] = []

    def get_features(self, xyxy, img_bgr):
        self.calls.append(np.array(xyxy, copy=True))
        return super().get_features(xyxy, img_bgr)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = create_model("baseline_resnet50").eval()
    model.pretrained_cfg = dataclasses.replace(model.pretrained_cfg, input_size=(3, 64, 64))
    return model


@pytest.fixture(scope="module")
def sequence():
    return track_vehicles.synthetic_sequence(num_frames=30, size=(240, 320), seed=0)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_botsort_keeps_three_vehicle_ids_and_calls_the_model(model, sequence):
    frames, detections, truth = sequence
    reid = CountingAppearanceModel(model)
    tracker = boxmot.BotSort(reid_model=reid, use_cmc=False)
    vehicle_of_id: dict[int, set[int]] = {}
    for frame, dets, boxes in zip(frames, detections, truth):
        for x1, y1, x2, y2, tid, *_ in tracker.update(dets, frame):
            # The true vehicle under each track box: every id must stay on one vehicle.
            best = max(boxes, key=lambda b: _iou((x1, y1, x2, y2), b[1:]))
            assert _iou((x1, y1, x2, y2), best[1:]) > 0.5
            vehicle_of_id.setdefault(int(tid), set()).add(best[0])
    assert len(vehicle_of_id) == 3, vehicle_of_id
    assert sorted(next(iter(v)) for v in vehicle_of_id.values()) == [0, 1, 2]
    assert all(len(v) == 1 for v in vehicle_of_id.values()), vehicle_of_id
    # One call per frame with detections, on exactly the detected boxes (the vehicle missed by the
    # detector for three frames, and a vehicle entering the frame, give fewer boxes).
    assert len(reid.calls) == sum(len(d) > 0 for d in detections)
    assert sum(len(c) for c in reid.calls) == sum(len(d) for d in detections) == 85
    np.testing.assert_allclose(reid.calls[0], detections[0][:, :4], atol=1e-4)


@pytest.mark.parametrize(
    "name, options",
    [
        ("StrongSort", {}),
        ("DeepOcSort", {}),
        ("HybridSort", {}),
        ("OccluBoost", {}),
        ("BoostTrack", {"use_embeddings": True}),
    ],
)
def test_other_appearance_trackers_call_the_model(model, sequence, name, options):
    frames, detections, _ = sequence
    reid = CountingAppearanceModel(model)
    tracker = getattr(boxmot, name)(reid_model=reid, **options)
    for frame, dets in zip(frames[:4], detections[:4]):
        tracker.update(dets, frame)
    assert len(reid.calls) >= 1


@pytest.mark.parametrize("name", ["ByteTrack", "OcSort", "SFSORT"])
def test_motion_only_trackers_refuse_a_reid_model(model, name):
    # What the docstring says: these use no appearance, and boxmot says so rather than ignoring it.
    with pytest.raises(TypeError, match="reid_model"):
        getattr(boxmot, name)(reid_model=AppearanceModel(model))


def test_bgr_frame_matches_rgb_extract(model):
    reid = AppearanceModel(model)
    red_bgr = np.zeros((120, 160, 3), np.uint8)
    red_bgr[..., 2] = 255
    got = reid.get_features([[0, 0, 160, 120]], red_bgr)
    want = extract(model, [Image.new("RGB", (160, 120), (255, 0, 0))], normalize=True, progress=False)
    np.testing.assert_allclose(got, want, atol=1e-5)
    blue = extract(model, [Image.new("RGB", (160, 120), (0, 0, 255))], normalize=True, progress=False)
    # The channel order is visible even to random weights: blue lands far outside the 1e-5 above.
    assert np.abs(got - blue).max() > 1e-3

    # A textured crop: the same preprocessing as extract on the RGB crop, not only on flat colour.
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    got = reid.get_features(np.array([[30.2, 40.7, 130.0, 99.6]]), frame)
    crop_rgb = np.ascontiguousarray(frame[41:100, 30:130, ::-1])
    np.testing.assert_allclose(got, extract(model, crop_rgb, normalize=True, progress=False), atol=1e-5)


def test_boxes_are_clipped_to_the_frame(model):
    reid = AppearanceModel(model)
    frame = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    partly_outside = reid.get_features([[-25, -10, 60, 50], [280, 200, 400, 300]], frame)
    inside = reid.get_features([[0, 0, 60, 50], [280, 200, 320, 240]], frame)
    np.testing.assert_allclose(partly_outside, inside, atol=1e-6)

    # No pixel inside the frame: still one row (the tracker needs one per box), from a black crop.
    black = extract(model, np.zeros((1, 64, 64, 3), np.uint8), normalize=True, progress=False)
    for box in ([400, 10, 450, 60], [-50, -50, -10, -5], [100, 100, 100, 150], [0, 240, 50, 260]):
        np.testing.assert_allclose(reid.get_features([box], frame), black, atol=1e-5)


def test_output_contract(model):
    reid = AppearanceModel(model, batch_size=2)
    frame = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    boxes = np.array(
        [
            [0, 0, 40, 30, 0.9, 0],
            [50, 60, 120, 100, 0.8, 2],
            [10, 10, 300, 230, 0.5, 0],
            [200, 100, 260, 180, 0.7, 1],
            [5, 5, 25, 60, 0.95, 0],
        ],
        np.float32,
    )
    feats = reid.get_features(boxes, frame)  # boxmot's (N, 6) rows: the box is the first four columns
    assert feats.shape == (5, model.embed_dim) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        feats, AppearanceModel(model, batch_size=32).get_features(boxes[:, :4], frame), atol=1e-5
    )
    for empty in (np.empty((0, 4)), [], np.empty((0, 6), np.float32)):
        out = reid.get_features(empty, frame)
        assert out.shape == (0, model.embed_dim) and out.dtype == np.float32
    assert model.training is False
    model.train()
    try:
        reid.get_features(boxes, frame)
        assert model.training  # the mode is restored
    finally:
        model.eval()


def test_bad_input_names_the_problem(model):
    reid = AppearanceModel(model)
    frame = np.zeros((240, 320, 3), np.uint8)
    with pytest.raises(ValueError, match="x2 < x1"):
        reid.get_features([[50, 10, 20, 40]], frame)
    with pytest.raises(ValueError, match="non-finite"):
        reid.get_features([[0, 0, np.nan, 40]], frame)
    with pytest.raises(ValueError, match="oriented boxes"):
        reid.get_features([[100, 100, 40, 20, 0.3]], frame)
    with pytest.raises(ValueError, match="uint8 BGR"):
        reid.get_features([[0, 0, 10, 10]], frame.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 BGR"):
        reid.get_features([[0, 0, 10, 10]], frame[..., 0])
    with pytest.raises(ValueError, match="batch_size"):
        AppearanceModel(model, batch_size=0)
    with pytest.raises(TypeError, match="model_or_name"):
        AppearanceModel(42)
    with pytest.raises(TypeError, match="already built model"):
        AppearanceModel(model, pretrained=True)


def test_built_from_a_checkpoint_folder(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    reid = AppearanceModel(tmp_path / "ckpt")
    frame = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        reid.get_features([[10, 10, 90, 70]], frame),
        AppearanceModel(model).get_features([[10, 10, 90, 70]], frame),
        atol=1e-5,
    )
    assert reid.input_size == (64, 64)


def test_fnc_never_imports_boxmot():
    code = (
        "import sys, fnc, fnc.integrations, fnc.integrations.boxmot, fnc.models, fnc.inference; "
        "assert 'boxmot' not in sys.modules, 'fnc imported boxmot'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV, timeout=120)


def test_example_tracks_a_synthetic_road(tmp_path):
    args = ["--no-pretrained", "--model", "baseline_resnet50", "--input-size", "64", "64"]
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--synthetic",
            tmp_path / "road",
            *args,
            "-o",
            tmp_path / "tracks.txt",
            "--save",
            tmp_path / "tracks.png",
        ],
        check=False,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "30 frames, 85 detections -> 3 tracks" in proc.stdout
    rows = np.loadtxt(tmp_path / "tracks.txt", delimiter=",", ndmin=2)
    assert rows.shape[1] == 10 and len(np.unique(rows[:, 1])) == 3
    picture = cv2.imread(str(tmp_path / "tracks.png"))
    assert picture.shape == (480, 640, 3)

    # The same frames as a video file, and the written detections read back as MOT lines.
    frames_dir, det_path = tmp_path / "road" / "frames", tmp_path / "road" / "det.txt"
    video = tmp_path / "road.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for name in sorted(os.listdir(frames_dir)):
        writer.write(cv2.imread(str(frames_dir / name)))
    writer.release()
    assert len(list(track_vehicles.read_frames(str(video)))) == 30
    dets = track_vehicles.read_mot_detections(str(det_path))
    assert sum(len(d) for d in dets.values()) == 85 and dets[1].shape == (2, 6)  # the blue car enters at frame 3
    np.testing.assert_allclose(dets[30], track_vehicles.synthetic_sequence()[1][29], atol=0.11)  # 0.1 px text


def test_interpolation_comes_from_the_config(model):
    frame = np.random.default_rng(4).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    box = [[20, 30, 180, 150]]
    bilinear = AppearanceModel(model).get_features(box, frame)
    original = model.pretrained_cfg
    try:
        model.pretrained_cfg = dataclasses.replace(original, interpolation="bicubic")
        assert np.abs(AppearanceModel(model).get_features(box, frame) - bilinear).max() > 1e-4
        model.pretrained_cfg = dataclasses.replace(original, interpolation="lanczos3")
        with pytest.raises(ValueError, match="interpolation must be one of .*'lanczos3'"):
            AppearanceModel(model)
    finally:
        model.pretrained_cfg = original
