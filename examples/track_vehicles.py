"""Track vehicles with boxmot, using a fnc-reid model for appearance.

    # offline, nothing downloaded: draw a synthetic road first, then track it
    python examples/track_vehicles.py --synthetic demo_road --no-pretrained --input-size 64 64 --save tracks.png

    # your own frames folder (or video file) and MOT-format detections
    python examples/track_vehicles.py frames/ --detections det.txt --checkpoint runs/veri/best \\
        -o tracks.txt --save tracks.png

Needs boxmot and OpenCV (``pip install boxmot``; boxmot is AGPL-3.0, fnc-reid does not depend on
it). fnc-reid only supplies the appearance model: ``fnc.integrations.boxmot.AppearanceModel``,
passed to the tracker as ``reid_model``.

This example ships no detector: detections come from a MOT-format text file, one line per box,
``frame,id,x,y,w,h,conf,...`` (frames numbered from 1 in file order, ``id`` ignored, pixels).
To detect on the fly instead, replace ``detections.get(frame_id)`` below with a detector, e.g.
ultralytics YOLO (also AGPL-3.0)::

    from ultralytics import YOLO
    detector = YOLO("yolo11n.pt")
    result = detector(frame, classes=[2, 5, 7], verbose=False)[0]  # COCO car, bus, truck
    dets = result.boxes.data.cpu().numpy()  # (N, 6): x1, y1, x2, y2, conf, cls

Tracks are written in MOT format (``frame,id,x,y,w,h,conf,-1,-1,-1``); ``--save`` draws each
track's path on the last frame. ``--synthetic DIR`` writes ``DIR/frames/*.jpg`` and
``DIR/det.txt`` (three vehicles in their lanes, one missed by the detector for a few frames)
and tracks them, so the whole pipeline runs offline; with random weights (``--no-pretrained``)
appearance is uninformative and motion does the tracking; load a re-ID checkpoint
(``--checkpoint DIR`` from ``fnc-reid train``, or ``--model hf-hub:org/repo``) for real use.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections import defaultdict
from collections.abc import Iterator

import cv2
import numpy as np

import fnc
from fnc.data.constants import IMAGE_EXTENSIONS
from fnc.integrations.boxmot import AppearanceModel

#: Trackers that take ``reid_model`` (boxmot 25), with the options that switch appearance on.
TRACKERS = {
    "botsort": ("BotSort", {"use_cmc": False}),
    "strongsort": ("StrongSort", {}),
    "deepocsort": ("DeepOcSort", {}),
    "hybridsort": ("HybridSort", {}),
    "boosttrack": ("BoostTrack", {"use_embeddings": True}),
}

# (body BGR, width, height, lane centre y, start x, speed px/frame) of the synthetic vehicles.
_VEHICLES = (
    ((40, 40, 200), 56, 30, 62, 10.0, 8.0),  # red car, left to right
    ((200, 120, 30), 60, 32, 128, 300.0, -7.0),  # blue car, right to left
    ((40, 200, 230), 86, 42, 192, 40.0, 5.0),  # yellow truck, left to right
)


def synthetic_sequence(
    num_frames: int = 30,
    size: tuple[int, int] = (240, 320),
    seed: int = 0,
    missed: tuple[int, range] = (1, range(12, 15)),
):
    """Frames of a three-lane road with three moving vehicles, and their true boxes.

    Args:
        num_frames: frames to draw.
        size: (H, W) of each frame.
        seed: seed of the asphalt texture and the detection jitter.
        missed: (vehicle index, frames) where the detector misses that vehicle.

    Returns:
        ``frames`` (list of (H, W, 3) uint8 BGR) and ``detections`` (one (N, 6) float32 array
        ``x1, y1, x2, y2, conf, cls`` per frame, slightly jittered like a real detector's) and
        ``truth`` (one list of (vehicle index, x1, y1, x2, y2) per frame, exact boxes).
    """
    rng = np.random.default_rng(seed)
    height, width = size
    road = rng.normal(95, 12, (height, width, 1)).clip(0, 255).astype(np.uint8).repeat(3, axis=2)
    road[:20] = road[-14:] = (60, 130, 60)  # verges
    for y in (95, 160):  # dashed lane markings
        for x in range(0, width, 40):
            cv2.line(road, (x, y), (x + 20, y), (220, 220, 220), 2)
    frames, detections, truth = [], [], []
    for t in range(num_frames):
        frame, dets, boxes = road.copy(), [], []
        for v, (colour, w, h, lane_y, x0, speed) in enumerate(_VEHICLES):
            x1, y1 = round(x0 + speed * t), lane_y - h // 2
            x2, y2 = x1 + w, y1 + h
            cv2.rectangle(frame, (x1, y1), (x2, y2), colour, -1)
            cab = (x1 + w // 2, y1 + 4, x2 - 4, y2 - 4) if speed > 0 else (x1 + 4, y1 + 4, x1 + w // 2, y2 - 4)
            cv2.rectangle(frame, cab[:2], cab[2:], (70, 50, 40), -1)  # windscreen side shows direction
            for wx in (x1 + 10, x2 - 10):
                cv2.circle(frame, (wx, y2), 5, (20, 20, 20), -1)
            # What a detector would see: clipped to the frame, only when mostly visible.
            box = np.array([max(x1, 0), max(y1, 0), min(x2, width), min(y2 + 5, height)], np.float32)
            if box[2] - box[0] < w / 2:
                continue
            boxes.append((v, *box.tolist()))
            if v == missed[0] and t in missed[1]:
                continue
            dets.append([*(box + rng.normal(0, 1.0, 4)), 0.9, 0])
        frames.append(frame)
        detections.append(np.array(dets, np.float32).reshape(-1, 6))
        truth.append(boxes)
    return frames, detections, truth


def write_synthetic(out_dir: str, **kwargs) -> tuple[str, str]:
    """Write :func:`synthetic_sequence` as ``out_dir/frames/NNNNNN.jpg`` and ``out_dir/det.txt``."""
    frames, detections, _ = synthetic_sequence(**kwargs)
    frames_dir = os.path.join(out_dir, "frames")
    os.makedirs(frames_dir, exist_ok=True)
    for i, frame in enumerate(frames, 1):
        cv2.imwrite(os.path.join(frames_dir, f"{i:06d}.jpg"), frame)
    det_path = os.path.join(out_dir, "det.txt")
    with open(det_path, "w") as f:
        for i, dets in enumerate(detections, 1):
            for x1, y1, x2, y2, conf, _ in dets:
                f.write(f"{i},-1,{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},{conf:.3f},-1,-1,-1\n")
    return frames_dir, det_path


def read_mot_detections(path: str) -> dict[int, np.ndarray]:
    """MOT-format ``frame,id,x,y,w,h,conf,...`` lines as {frame: (N, 6) x1, y1, x2, y2, conf, cls=0}."""
    rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    if rows.size and rows.shape[1] < 7:
        raise ValueError(f"{path}: MOT detections need at least 7 columns frame,id,x,y,w,h,conf; got {rows.shape[1]}")
    by_frame: dict[int, list] = defaultdict(list)
    for frame, _, x, y, w, h, conf in rows[:, :7]:
        by_frame[int(frame)].append([x, y, x + w, y + h, conf, 0])
    return {k: np.array(v, np.float32) for k, v in by_frame.items()}


def read_frames(source: str) -> Iterator[np.ndarray]:
    """BGR frames of a folder of images (sorted by name) or of a video file."""
    if os.path.isdir(source):
        names = sorted(n for n in os.listdir(source) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {source}")
        for name in names:
            frame = cv2.imread(os.path.join(source, name))
            if frame is None:
                raise ValueError(f"cannot decode {os.path.join(source, name)}")
            yield frame
        return
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise ValueError(f"{source} is neither a folder of frames nor a video OpenCV can open")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def draw_tracks(frame: np.ndarray, paths: dict[int, list], last_boxes: dict[int, np.ndarray], save: str) -> None:
    """Draw each track's path (box centres) and its last box and id on ``frame``; write a PNG."""
    canvas = frame.copy()
    for tid, points in sorted(paths.items()):
        hue = int(tid * 47) % 180
        colour = tuple(int(c) for c in cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0])
        cv2.polylines(canvas, [np.array(points, np.int32).reshape(-1, 1, 2)], False, colour, 2)
        for p in points:
            cv2.circle(canvas, tuple(int(c) for c in p), 2, colour, -1)
        if tid in last_boxes:
            x1, y1, x2, y2 = (int(c) for c in last_boxes[tid])
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
            cv2.putText(
                canvas, f"id {tid}", (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA
            )
    # Twice the size so the paths and labels are readable.
    canvas = cv2.resize(canvas, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(save, canvas)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="folder of frames or a video file")
    parser.add_argument("--detections", help="MOT-format detections: frame,id,x,y,w,h,conf,...")
    parser.add_argument("--synthetic", metavar="DIR", help="write a synthetic road sequence to DIR and track it")
    parser.add_argument("--model", default="fnc_resnet50", help="arch[.tag] or hf-hub:org/repo")
    parser.add_argument("--checkpoint", help="a save_pretrained / fnc-reid train folder")
    parser.add_argument("--no-pretrained", action="store_true", help="random weights, nothing downloaded")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="default: the model's")
    parser.add_argument("--device", help="e.g. cuda; default: cpu")
    parser.add_argument("--tracker", default="botsort", choices=sorted(TRACKERS))
    parser.add_argument("-o", "--output", default="tracks.txt", help="MOT-format tracks file")
    parser.add_argument("--save", help="draw the tracks' paths on the last frame to this PNG")
    args = parser.parse_args(argv)

    if args.synthetic:
        if args.source or args.detections:
            parser.error("--synthetic writes its own frames and detections; drop SOURCE / --detections")
        args.source, args.detections = write_synthetic(args.synthetic)
        print(f"synthetic sequence written to {args.synthetic}/ (frames/, det.txt)")
    elif not args.source or not args.detections:
        parser.error("give SOURCE (frames folder or video) and --detections, or --synthetic DIR")

    # 1. The appearance model: any fnc-reid model; boxmot calls its get_features each frame.
    if args.checkpoint:
        model = fnc.create_model(checkpoint_path=args.checkpoint)
    else:
        model = fnc.create_model(args.model, pretrained=not args.no_pretrained)
    if args.input_size:
        model.pretrained_cfg = dataclasses.replace(model.pretrained_cfg, input_size=(3, *args.input_size))
    reid = AppearanceModel(model, device=args.device)

    # 2. The tracker, with the fnc-reid model as its reid_model.
    import boxmot  # AGPL-3.0: imported by this example only, never by fnc-reid itself

    class_name, options = TRACKERS[args.tracker]
    tracker = getattr(boxmot, class_name)(reid_model=reid, **options)

    # 3. Frames and detections in, tracks out.
    detections = read_mot_detections(args.detections)
    paths: dict[int, list] = defaultdict(list)
    last_boxes: dict[int, np.ndarray] = {}
    frame = None
    rows = 0
    with open(args.output, "w") as out:
        for frame_id, frame in enumerate(read_frames(args.source), 1):
            dets = detections.get(frame_id, np.empty((0, 6), np.float32))
            tracks = tracker.update(dets, frame)  # (M, 8): x1, y1, x2, y2, id, conf, cls, det_ind
            last_boxes = {}
            for x1, y1, x2, y2, tid, conf, *_ in tracks:
                tid = int(tid)
                out.write(f"{frame_id},{tid},{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},{conf:.3f},-1,-1,-1\n")
                paths[tid].append(((x1 + x2) / 2, (y1 + y2) / 2))
                last_boxes[tid] = np.array([x1, y1, x2, y2])
                rows += 1
    if frame is None:
        raise SystemExit(f"no frames in {args.source}")
    print(
        f"{frame_id} frames, {sum(len(d) for d in detections.values())} detections -> {len(paths)} tracks "
        f"({rows} track boxes) written to {args.output}"
    )
    if args.save:
        draw_tracks(frame, paths, last_boxes, args.save)
        print(f"track paths drawn to {args.save}")


if __name__ == "__main__":
    main()
