"""Fine-tune FNC on your own cameras: build a CSV from your folder layout, train, evaluate.

    python examples/finetune.py my_cameras/ --output runs/mine

Expects ``ROOT/<camera>/<vehicle id>/<image>`` (e.g. ``my_cameras/cam3/0042/frame_001.jpg``), the
layout a tracker's crops often land in. ``to_csv`` below is the part to adapt to your own layout:
it writes ``ROOT/labels.csv`` (``path,id,camera``), which ``fnc.data.read_csv`` reads; a few
vehicles are held out as query / gallery to measure mAP. Training is the paper's recipe
(``fnc.engine.Trainer``: Ranger, warm-up + steps, ID + triplet losses, P x K batches); the best
model is saved to ``OUTPUT/best`` and loads with ``fnc.create_model(checkpoint_path=...)``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import fnc
from fnc.data import read_csv
from fnc.engine import Trainer

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def to_csv(root: Path) -> Path:
    """Write ``root/labels.csv`` for images at ``root/<camera>/<vehicle id>/<image>``."""
    rows = []
    for image in sorted(root.glob("*/*/*")):
        if image.suffix.lower() in IMAGE_SUFFIXES:
            camera, vehicle = image.parent.parent.name, image.parent.name
            rows.append((image.relative_to(root).as_posix(), vehicle, camera))
    if not rows:
        raise SystemExit(f"no images found as {root}/<camera>/<vehicle id>/<image>")
    path = root / "labels.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "id", "camera"])
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="ROOT/<camera>/<vehicle id>/<image>")
    parser.add_argument("--output", default="runs/finetune", help="checkpoints go to OUTPUT/last and OUTPUT/best")
    parser.add_argument("--model", default="fnc_se_resnext101", help="architecture to fine-tune")
    parser.add_argument("--no-pretrained", action="store_true", help="start from random weights (nothing downloaded)")
    parser.add_argument("--holdout-ids", type=int, default=20, help="vehicles held out for query / gallery")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64, help="P x K, K = 4 images per vehicle")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="default: the model's (288 x 384)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: CUDA if available)")
    args = parser.parse_args(argv)

    data = read_csv(to_csv(args.root), holdout_ids=args.holdout_ids)
    print(data.summary())

    model = fnc.create_model(args.model, pretrained=not args.no_pretrained)
    # A shorter run than the paper's 120 epochs: warm-up and lr steps scaled to it.
    trainer = Trainer(
        model,
        data,
        args.output,
        epochs=args.epochs,
        batch_size=args.batch_size,
        warmup_epochs=max(1, args.epochs // 12),
        milestones=(max(2, args.epochs // 3), max(3, 7 * args.epochs // 12)),
        eval_every=max(1, args.epochs // 4),
        rerank=True,
        input_size=args.input_size,
        num_workers=0 if args.device == "cpu" else 4,
        device=args.device,
    )
    best = trainer.fit()
    print(
        "best: "
        + ", ".join(
            f"{k} {100 * v:.1f}%" for k, v in best.items() if k in ("mAP", "rank1", "mAP_rerank", "rank1_rerank")
        )
    )
    print(f"model: {Path(args.output) / 'best'} (fnc.create_model(checkpoint_path=...), or fnc-reid push it)")


if __name__ == "__main__":
    main()
