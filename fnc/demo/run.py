"""``fnc-reid demo``: the whole re-ID job on this machine, with nothing downloaded.

:func:`run_demo` draws a synthetic dataset (:mod:`fnc.demo.synthetic`), written as a generic CSV
and read back with the same reader a user's data goes through, takes ``fnc_resnet50`` with random
weights, scores it, trains it with the paper's recipe (:class:`fnc.engine.Trainer`: Ranger,
warm-up + step decay, Eq. 7 losses, P x K sampling, flip / pad-crop / random-erasing augmentation)
at low resolution, scores it again with and without k-reciprocal re-ranking, and draws a ranked
list and SAB / CAB attention maps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from fnc.data.registry import read_dataset
from fnc.demo.synthetic import make_synthetic_dataset
from fnc.engine.outputs import check_output_folder, written_by_fnc
from fnc.engine.trainer import Trainer
from fnc.inference.extraction import extract
from fnc.models import create_model
from fnc.models.backbones import Bottleneck
from fnc.viz._draw import font
from fnc.viz.attention import attention_map
from fnc.viz.ranked import ranked_list

__all__ = ["DEMO_MARKER", "DEMO_SIZES", "REPORTED_METRICS", "DemoSize", "position_on_vehicle", "run_demo", "summary"]

#: The file that marks a folder as the demo's output, so a later demo may write there again.
DEMO_MARKER = ".fnc-reid-demo"


# --------------------------------------------------------------------------- the demo


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: data, resolution, model variant and training length.

    The recipe is the paper's (Ranger = RAdam + Lookahead, Eq. 7 losses, P x K batches, flip and
    pad + crop) with the schedule's shape (linear warm-up from 0.1 x lr, two x0.1 steps)
    compressed to the short run: warm-up over the first epoch, steps at the fractions
    ``milestones`` of it. Departures from the paper, all because every weight starts random and
    the run has a few hundred optimiser steps on two CPU cores (the schedule counts epochs, so a
    small dataset also means few steps: the data is sized for steps, not only for accuracy):

    - ``fnc_resnet50`` with ``separate=False``: the branches share layer3[1:] and layer4 (the
      paper's Table 5 "not separate" ablation), which costs about 0.52 instead of 0.80
      CPU-seconds per forward + backward of 16 images at 48 x 64, so the run gets ~1.5x the
      steps in the same time;
    - every bottleneck's last BN scale starts at zero (:meth:`Bottleneck.zero_init_residual`,
      Goyal et al. 2017; torchvision's ``zero_init_residual``), so each residual block starts as
      its shortcut; the paper starts from ImageNet weights and needs no such init. This is what
      made the run dependable: with BoT's init (every BN scale 1) the first step's gradient norm
      is 12k-34k (seeds 0, 1) and the result hung on the run (seed 0: mAP 74.5% with 2 threads,
      49.2% with 1, float reduction order alone), with it 280-330, and the same 480 steps
      reach mAP 84.9% / 84.7% / 81.1%, rank-1 90.0% / 87.5% / 82.5% (seeds 0 / 1 / 2, 1
      thread; the README has the full rows). It costs nothing: it changes no computation;
    - 48 x 64 input instead of the paper's 288 x 384 (SAB then works on a 3 x 4 grid);
    - batch 16 = 4 identities x 4 images instead of 16 x 4;
    - peak lr 1e-2 (the paper's 3.5e-4 fine-tunes an ImageNet backbone) and betas (0.9, 0.99)
      instead of Ranger's (0.95, 0.999): shorter moment memories adapt faster in a short run.
      A lower peak learned more slowly (3e-3 without the zero init: seed 0 mAP 33% after 7 of 12
      epochs where 1e-2 had 38% after 3; seed 1's loss rose in epoch 3; both stopped there). The
      ID loss still rises above its start (10.2 -> 11.9 for the two branches) while the lr is at
      its peak and the triplet loss falls; it drops only after the first x0.1 step;
    - the x0.1 steps at 1/2 and 3/4 of the run (the paper's at 40 and 70 of 120 epochs): from
      random weights the loss rose while the lr was at its peak and fell only after the first
      step, so the run spends more of its steps at the lower rates (seed 0: mAP 49.2%, rank-1
      50.0% against 47.3%, 40.0% with the steps at 2/3 and 5/6, before the zero init; one seed, a hint);
    - no random erasing: at 48 x 64 one erased rectangle hides most of a vehicle's marking, and
      from random weights in a few hundred steps it cost more than it regularised (2 seeds:
      trained mAP 15-23% with it, 29-39% without);
    - one shot per identity and camera, occluded only by the fixed poles some cameras have;
      the painter's per-shot occluders (bush, bollards, sign post, ``occluder_p``) are off:
      with two shots and occluders on 30% of the shots, 480 steps reached 45% mAP instead of
      68% (seed 0, at an earlier revision of the trainer; which of the two changes cost it is
      not yet separated);
    - re-ranking with k1=20, k2=6, lambda=0.3 (Zhong et al.'s defaults; the paper's k1=75
      exceeds this small gallery).
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
    milestones: tuple[float, ...] = (1 / 2, 3 / 4)  # x0.1 steps, as fractions of the epochs
    separate: bool = False  # Table 5's shared res4: see the docstring
    zero_init_residual: bool = True  # every bottleneck starts as its shortcut: see the docstring
    occluder_p: float = 0.0  # per-shot bush / bollards / sign post: see the docstring
    padding: int = 2  # BoT's 10 px at 256 x 128, scaled to the low resolution
    erase_p: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    examples: int = 3  # queries drawn in the PNGs


DEMO_SIZES = {
    "default": DemoSize(
        num_train_ids=160,
        num_test_ids=40,
        num_cams=4,
        shots_per_cam=1,
        image_size=(96, 128),
        input_size=(48, 64),
        epochs=12,
        batch_size=16,
    ),
    # For tests: seconds, not minutes; the numbers mean nothing.
    "quick": DemoSize(
        num_train_ids=6,
        num_test_ids=4,
        num_cams=2,
        shots_per_cam=2,
        image_size=(48, 64),
        input_size=(32, 48),
        epochs=1,
        batch_size=8,
        rerank_k1=6,
        rerank_k2=2,
        examples=2,
    ),
}

#: The metrics the demo reports, in each of its ``untrained`` / ``trained`` / ``reranked`` rows.
REPORTED_METRICS = ("mAP", "rank1", "rank5", "mINP")


def _milestones(epochs: int, fractions: tuple[float, ...]) -> tuple[int, ...]:
    """Epochs of the x0.1 steps: ``fractions`` of ``epochs``, distinct, after the warm-up epoch."""
    steps = sorted({max(2 + i, round(epochs * f)) for i, f in enumerate(fractions)})
    return tuple(s for s in steps if s < epochs) or (epochs + 1,)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The demo's numbers as one JSON-ready dict (what ``fnc-reid demo --json`` prints last).

    Args:
        result: what :func:`run_demo` returns.

    Returns:
        ``{"untrained": m, "trained": m, "reranked": m, "seconds": s}``, each ``m`` with the
        fractions ``mAP``, ``rank1``, ``rank5`` and ``mINP``; ``reranked`` is the trained model
        with k-reciprocal re-ranking.

    >>> m = {"mAP": 0.5, "rank1": 0.6, "rank5": 0.9, "mINP": 0.3}
    >>> r = {"before": m, "after": {**m, **{k + "_rerank": v for k, v in m.items()}}, "seconds": 1.0}
    >>> summary(r)["reranked"]["rank1"]
    0.6
    """

    def pick(m: dict[str, float], suffix: str = "") -> dict[str, float]:
        return {k: float(m[k + suffix]) for k in REPORTED_METRICS}

    return {
        "untrained": pick(result["before"]),
        "trained": pick(result["after"]),
        "reranked": pick(result["after"], "_rerank"),
        "seconds": round(float(result["seconds"]), 1),
    }


def position_on_vehicle(box: Sequence[float], grid: tuple[int, int]) -> tuple[int, int]:
    """The layer4 cell under a vehicle's body: its box centre, a little below mid-height (the doors).

    Args:
        box: ``(x0, y0, x1, y1)`` as fractions of the image (the painter's ``boxes.json``).
        grid: (rows, cols) of the layer4 grid.

    Returns:
        (row, col) on that grid.

    >>> position_on_vehicle((0.1, 0.3, 0.9, 0.9), (3, 4))
    (1, 2)
    """
    x0, y0, x1, y1 = box
    rows, cols = grid
    cx, cy = (x0 + x1) / 2, y0 + 0.6 * (y1 - y0)
    return min(rows - 1, int(cy * rows)), min(cols - 1, int(cx * cols))


def _stack(rows: list[Image.Image], title: str, labels: list[str] | None = None) -> Image.Image:
    """Rows one under another, under a title; each row optionally with a label on its left."""
    # The same font the row pictures use.
    title_font, small = font(14), font(12)
    label_w = 90 if labels else 0
    width = max(r.width for r in rows) + label_w
    height = 30 + sum(r.height for r in rows)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 8), title, fill=(20, 20, 20), font=title_font)
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

    kw = dict(normalize=True, input_size=input_size, progress=False, device=device)
    q = torch.from_numpy(extract(model, [r.path for r in data.query], **kw))
    g = torch.from_numpy(extract(model, [r.path for r in data.gallery], **kw))
    dist = torch.cdist(q.double(), g.double()).numpy()
    # VeRi protocol: the same vehicle seen by the same camera is not a match to find.
    q_ids = np.array([[r.pid, r.camid] for r in data.query])
    g_ids = np.array([[r.pid, r.camid] for r in data.gallery])
    junk = (q_ids[:, None, 0] == g_ids[None, :, 0]) & (q_ids[:, None, 1] == g_ids[None, :, 1])
    return np.where(junk, np.inf, dist), junk


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{v:6.1%}"


def run_demo(
    output_dir: str | os.PathLike = "fnc-demo",
    *,
    quick: bool = False,
    seed: int = 0,
    epochs: int | None = None,
    device: str | None = None,
    save_model: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    echo: Any = print,
) -> dict[str, Any]:
    """Draw a synthetic vehicle dataset, train FNC on it from scratch, score it, and draw it.

    Steps: write the dataset (:func:`make_synthetic_dataset`) to ``output_dir/data`` and read it
    with the CSV reader; create ``fnc_resnet50`` with random weights (nothing is downloaded);
    evaluate it (mAP / rank-1, VeRi protocol, with and without k-reciprocal re-ranking); train it
    with :class:`fnc.engine.Trainer` and the paper's recipe (see :class:`DemoSize`); evaluate
    again; write ``ranked_list.png`` (queries with their top matches before and after training)
    and ``attention_maps.png`` (SAB attention and CAB energy of the trained model).

    ``output_dir`` must be new, empty, or an earlier demo's output (marked by a
    :data:`DEMO_MARKER` file): the demo never writes over files it did not write, such as your
    own ``data/labels.csv``, unless ``overwrite=True`` (then files at the demo's paths are
    replaced; nothing is deleted).

    The default size is 480 optimiser steps, about 440 CPU-seconds (a few minutes on 2 CPU
    cores; see the README); ``quick=True`` runs in seconds and is for tests.

    Args:
        output_dir: where the data, pictures (and model, if saved) go.
        quick: the tiny size (a smoke test, meaningless numbers).
        seed: seeds the drawing, the model's initialisation and training.
        epochs: override the size's number of epochs.
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA if available.
        save_model: also write the trained model to ``output_dir/model`` (``save_pretrained``;
            load it with ``fnc.create_model(checkpoint_path=...)``).
        progress: show training progress bars.
        overwrite: write into a non-empty ``output_dir`` that no demo wrote.
        echo: where the report lines go (``print`` by default; ``lambda *a: None`` silences).

    Raises:
        fnc.engine.outputs.OutputExistsError: ``output_dir`` holds files the demo did not write
            (without ``overwrite``), or is a file.

    Returns:
        ``{"before": metrics, "after": metrics, "ranked_list": path, "attention_maps": path,
        "model": path or None, "data": labels.csv path, "seconds": float, "epochs": int}``;
        metrics are fractions with keys ``mAP``, ``rank1``, ... and ``mAP_rerank``, ``rank1_rerank``, ...

    >>> result = run_demo("/tmp/fnc-demo", quick=True, progress=False)  # doctest: +SKIP
    >>> result["after"]["mAP"] > result["before"]["mAP"]  # doctest: +SKIP
    True
    """
    import torch

    start = time.perf_counter()
    size = DEMO_SIZES["quick" if quick else "default"]
    num_epochs = epochs if epochs is not None else size.epochs
    out = Path(output_dir)
    check_output_folder(
        out,
        lambda f: written_by_fnc(f, [DEMO_MARKER]),
        what="demo output folder",
        overwrite=overwrite,
        fix="the demo would write data/labels.csv, data/images/, ranked_list.png and attention_maps.png there: "
        "choose another output, or pass overwrite=True (fnc-reid demo --overwrite) to replace those files",
    )
    out.mkdir(parents=True, exist_ok=True)
    # Marked before anything else is written, so even an interrupted demo's folder is recognised.
    (out / DEMO_MARKER).write_text("written by fnc-reid demo; a later demo may replace the files here\n")

    csv_path = make_synthetic_dataset(
        out / "data",
        num_train_ids=size.num_train_ids,
        num_test_ids=size.num_test_ids,
        num_cams=size.num_cams,
        shots_per_cam=size.shots_per_cam,
        image_size=size.image_size,
        queries_per_id=1,
        occluder_p=size.occluder_p,
        seed=seed,
    )
    boxes = json.loads((csv_path.parent / "boxes.json").read_text())
    data = read_dataset(f"csv:{csv_path}")
    echo(f"Synthetic vehicles drawn to {csv_path.parent} ({time.perf_counter() - start:.0f}s)")
    echo(data.summary())

    torch.manual_seed(seed)
    model = create_model("fnc_resnet50", pretrained=False, separate=size.separate)
    if size.zero_init_residual:
        for block in model.modules():
            if isinstance(block, Bottleneck):
                block.zero_init_residual()
    # Record the demo's resolution, so extract() and a saved copy use it by default.
    model.pretrained_cfg = dataclasses.replace(
        model.pretrained_cfg, input_size=(3, *size.input_size), dataset="synthetic"
    )
    milestones = _milestones(num_epochs, size.milestones)
    trainer = Trainer(
        model,
        data,
        None,
        epochs=num_epochs,
        batch_size=size.batch_size,
        num_instances=4,
        input_size=size.input_size,
        lr=size.lr,
        warmup_epochs=1,
        milestones=milestones,
        padding=size.padding,
        erase_p=size.erase_p,
        betas=size.betas,
        eval_every=0,
        rerank=True,
        rerank_k1=size.rerank_k1,
        rerank_k2=size.rerank_k2,
        rerank_lambda=size.rerank_lambda,
        protocol="veri",
        num_workers=0,
        device=device,
        progress=progress,
        seed=seed,
    )
    hgt, wid = size.input_size
    branches = "separate branches" if size.separate else "res4 shared by the branches as in Table 5"
    init = ", residual blocks zero-initialised" if size.zero_init_residual else ""
    echo(
        f"\nfnc_resnet50 ({branches}), random weights{init}, {hgt}x{wid} input, {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters"
    )
    before = trainer.evaluate()
    dist_before, _ = _ranked(trainer.model, data, size.input_size, trainer.device)
    steps = len(trainer.loader) * num_epochs
    echo(f"untrained: mAP {_pct(before['mAP'])}, rank-1 {_pct(before['rank1'])}")
    echo(
        f"training {num_epochs} epoch{'s' if num_epochs > 1 else ''} ({steps} steps of {size.batch_size // 4} ids x 4 images), "
        f"Ranger lr {size.lr:g}, warm-up 1 epoch, x0.1 at epochs {', '.join(map(str, milestones))} ..."
    )
    train_start = time.perf_counter()
    # With eval_every=0 the trainer evaluates once, after the last epoch: those are its metrics.
    after = trainer.fit()
    train_seconds = time.perf_counter() - train_start
    model = trainer.model.eval()

    echo(f"trained in {train_seconds:.0f}s\n")
    echo(f"{'':<12}{'mAP':>8}{'rank-1':>8}{'rank-5':>8}{'mINP':>8}")
    rows_ = (("untrained", before, ""), ("trained", after, ""), ("trained +RR", after, "_rerank"))
    for name, m, suffix in rows_:
        echo(f"{name:<12}" + "".join(f"{_pct(m.get(k + suffix)):>8}" for k in REPORTED_METRICS))
    echo(
        f"(+RR: k-reciprocal re-ranking, k1={size.rerank_k1}, k2={size.rerank_k2}, lambda={size.rerank_lambda}; "
        f"{len(data.query)} queries, {len(data.gallery)} gallery images of {size.num_test_ids} unseen vehicles)"
    )

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
            rows.append(
                ranked_list(
                    q.path,
                    gallery_paths,
                    ranked_indices=order[:k],
                    query_id=q.pid,
                    gallery_ids=gallery_ids,
                    k=k,
                    thumb_size=(72, 96),
                )
            )
            labels.append(name)
    ranked_path = out / "ranked_list.png"
    _stack(rows, f"Query (blue) and its top {k} gallery matches: green = same vehicle, red = another one", labels).save(
        ranked_path
    )

    # The model runs at its training size (the SAB grid it learned on); the panels are enlarged
    # afterwards to >= 300 px wide, so they and their titles are legible.
    zoom = -(-300 // wid)
    grid = (hgt // model.stride, wid // model.stride)
    maps = []
    for i in picked:
        rel = Path(data.query[i].path).resolve().relative_to(csv_path.parent.resolve()).as_posix()
        maps.append(
            attention_map(
                model, data.query[i].path, position_on_vehicle(boxes[rel], grid), input_size=size.input_size, zoom=zoom
            )
        )
    attention_path = out / "attention_maps.png"
    _stack(
        maps,
        f"Trained FNC at its {hgt}x{wid} training size (drawn {zoom}x): SAB attention of a cell on the vehicle "
        "(ring) with its most attended cells, CAB channel-mask energy",
    ).save(attention_path)

    model_path = None
    if save_model:
        model_path = out / "model"
        model.save_pretrained(
            model_path, dataset="synthetic (fnc-reid demo)", metrics={"mAP": after["mAP"], "rank1": after["rank1"]}
        )
    seconds = time.perf_counter() - start
    echo(f"\nranked lists:   {ranked_path}\nattention maps: {attention_path}")
    if model_path is not None:
        echo(f"model:          {model_path}")
    echo(f"done in {seconds:.0f}s")
    return {
        "before": before,
        "after": after,
        "ranked_list": ranked_path,
        "attention_maps": attention_path,
        "model": model_path,
        "data": csv_path,
        "seconds": seconds,
        "epochs": num_epochs,
    }
