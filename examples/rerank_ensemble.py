"""The paper's test-time recipe: FNC + BFE embeddings fused in k-reciprocal re-ranking.

    python examples/rerank_ensemble.py VeRi/image_query VeRi/image_test \\
        --fnc-checkpoint runs/fnc/best --bfe-checkpoint runs/bfe/best -o dist.npy

Each model embeds query and gallery; ``fnc.rerank`` sums the models' (weighted) Euclidean
distances and re-ranks them (k1=75, k2=10, lambda=0.1 as in the paper). When the file names are
VeRi-style (``0002_c002_...jpg``: vehicle id, camera), the script also scores every step with
mAP / rank-1 under the VeRi protocol.
"""

from __future__ import annotations

import argparse
import os
import re

import numpy as np
import torch

import fnc

_VERI_NAME = re.compile(r"^(\d+)_c(\d+)_")


def veri_labels(paths: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids, cameras) parsed from VeRi-style file names, or None if any name is not one."""
    found = [_VERI_NAME.match(os.path.basename(p)) for p in paths]
    if not all(found):
        return None
    return np.array([int(m.group(1)) for m in found]), np.array([int(m.group(2)) for m in found])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("query", help="folder of query images")
    parser.add_argument("gallery", help="folder of gallery images")
    parser.add_argument("--fnc", default="fnc_se_resnext101", help="FNC model name (or hf-hub:org/repo)")
    parser.add_argument("--bfe", default="bfe_se_resnext101", help="BFE model name (or hf-hub:org/repo)")
    parser.add_argument("--fnc-checkpoint", help="trained FNC folder")
    parser.add_argument("--bfe-checkpoint", help="trained BFE folder")
    parser.add_argument("--no-pretrained", action="store_true", help="random weights, nothing downloaded")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="default: each model's")
    parser.add_argument("--weights", nargs=2, type=float, default=[1.0, 1.0], metavar=("W_FNC", "W_BFE"))
    parser.add_argument("--k1", type=int, default=75)
    parser.add_argument("--k2", type=int, default=10)
    parser.add_argument("--lambda", dest="lambda_value", type=float, default=0.1)
    parser.add_argument("-o", "--output", default="dist.npy", help="re-ranked (num_query, num_gallery) distances")
    args = parser.parse_args(argv)

    query, gallery = fnc.list_images(args.query), fnc.list_images(args.gallery)
    feats = {}
    for name, arch, ckpt in (("FNC", args.fnc, args.fnc_checkpoint), ("BFE", args.bfe, args.bfe_checkpoint)):
        model = fnc.create_model(arch, pretrained=not args.no_pretrained, checkpoint_path=ckpt).eval()
        # L2-normalised, so both models' distances live on the same [0, 2] scale before weighting.
        kw = dict(normalize=True, input_size=args.input_size, progress=False)
        feats[name] = (fnc.extract(model, query, **kw), fnc.extract(model, gallery, **kw))
        print(f"{name}: {model.embed_dim}-d embeddings of {len(query)} queries and {len(gallery)} gallery images")

    # The paper's k1 assumes thousands of images; never more than there are.
    k1 = min(args.k1, len(query) + len(gallery) - 1)
    k2 = min(args.k2, k1)
    dist = fnc.rerank(
        [feats["FNC"][0], feats["BFE"][0]],
        [feats["FNC"][1], feats["BFE"][1]],
        k1=k1,
        k2=k2,
        lambda_value=args.lambda_value,
        weights=args.weights,
    )
    np.save(args.output, dist)
    print(f"wrote {dist.shape[0]} x {dist.shape[1]} fused, re-ranked distances to {args.output} (k1={k1}, k2={k2})")

    q_labels, g_labels = veri_labels(query), veri_labels(gallery)
    if q_labels is None or g_labels is None:
        return

    def score(d: np.ndarray) -> str:
        r = fnc.evaluate(d, q_labels[0], g_labels[0], q_labels[1], g_labels[1], protocol="veri")
        return f"mAP {100 * r.mAP:5.1f}%, rank-1 {100 * r.cmc[0]:5.1f}%"

    def euclidean(q: np.ndarray, g: np.ndarray) -> np.ndarray:
        return torch.cdist(torch.from_numpy(q).double(), torch.from_numpy(g).double()).numpy()

    plain = {name: euclidean(*f) for name, f in feats.items()}
    fused = args.weights[0] * plain["FNC"] + args.weights[1] * plain["BFE"]
    print(f"FNC alone:              {score(plain['FNC'])}")
    print(f"BFE alone:              {score(plain['BFE'])}")
    print(f"FNC + BFE:              {score(fused)}")
    print(f"FNC + BFE, re-ranked:   {score(dist)}")


if __name__ == "__main__":
    main()
