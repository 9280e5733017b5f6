"""Quick start: create a model, embed a query folder and a gallery folder, rank the gallery.

    python examples/quickstart.py QUERY_DIR GALLERY_DIR
    python examples/quickstart.py query/ gallery/ --checkpoint runs/veri/best --save ranked.png

By default the model is ``fnc_se_resnext101`` with its ImageNet backbone (downloaded once from
the Hugging Face Hub); for real re-ID quality load a re-ID checkpoint (``--checkpoint DIR`` from
``fnc-reid train``, or ``--model hf-hub:org/repo``). ``--no-pretrained`` uses random weights and
downloads nothing.
"""

from __future__ import annotations

import argparse
import os

import fnc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("query", help="folder of query images")
    parser.add_argument("gallery", help="folder of gallery images")
    parser.add_argument("--model", default="fnc_se_resnext101", help="arch[.tag] or hf-hub:org/repo")
    parser.add_argument("--checkpoint", help="a save_pretrained / fnc-reid train folder")
    parser.add_argument("--no-pretrained", action="store_true", help="random weights, nothing downloaded")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="default: the model's")
    parser.add_argument("--top", type=int, default=5, help="matches to print per query")
    parser.add_argument("--save", help="draw the first query's ranked list to this PNG")
    args = parser.parse_args(argv)

    # 1. Create: any registered name, a published checkpoint, or a local training folder.
    model = fnc.create_model(args.model, pretrained=not args.no_pretrained, checkpoint_path=args.checkpoint)
    model.eval()

    # 2. Extract: one L2-normalised row per image, in list_images order.
    query_paths, gallery_paths = fnc.list_images(args.query), fnc.list_images(args.gallery)
    q = fnc.extract(model, query_paths, normalize=True, input_size=args.input_size, progress=False)
    g = fnc.extract(model, gallery_paths, normalize=True, input_size=args.input_size, progress=False)
    print(f"{len(q)} queries, {len(g)} gallery images, {q.shape[1]}-d embeddings")

    # 3. Rank: cosine distance of normalised embeddings; smaller is more similar.
    distances = 1.0 - q @ g.T
    for i, path in enumerate(query_paths):
        best = distances[i].argsort()[: args.top]
        matches = ", ".join(f"{os.path.basename(gallery_paths[j])} ({distances[i, j]:.3f})" for j in best)
        print(f"{os.path.basename(path)} -> {matches}")

    if args.save:
        fnc.viz.ranked_list(query_paths[0], gallery_paths, distances=distances[0], k=args.top, save=args.save)
        print(f"ranked list of {os.path.basename(query_paths[0])} drawn to {args.save}")


if __name__ == "__main__":
    main()
