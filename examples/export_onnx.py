"""Export a re-ID model to ONNX and run it with onnxruntime, without fnc-reid or PyTorch.

    python examples/export_onnx.py -o fnc.onnx
    python examples/export_onnx.py --checkpoint runs/veri/best -o fnc_veri.onnx --image car.jpg

The file maps ``images`` (batch, 3, H, W), preprocessed, to ``embeddings`` (batch, D); its
metadata says how to preprocess (input size, mean, std), which is all a deployment needs. Needs
``pip install onnx onnxruntime`` (or ``pip install "fnc-reid[onnx]"``).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image

import fnc


def preprocess(path: str, meta: dict[str, str]) -> np.ndarray:
    """What a deployment does with PIL and numpy only: resize, scale to [0, 1], normalise, NCHW."""
    _, hgt, wid = json.loads(meta["input_size"])
    mean = np.array(json.loads(meta["mean"]), np.float32)
    std = np.array(json.loads(meta["std"]), np.float32)
    rgb = Image.open(path).convert("RGB").resize((wid, hgt), Image.BILINEAR)
    x = (np.asarray(rgb, np.float32) / 255.0 - mean) / std
    return x.transpose(2, 0, 1)[None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", default="fnc_se_resnext101.onnx", help="the .onnx file to write")
    parser.add_argument("--model", default="fnc_se_resnext101", help="arch[.tag] or hf-hub:org/repo")
    parser.add_argument("--checkpoint", help="a save_pretrained / fnc-reid train folder")
    parser.add_argument("--no-pretrained", action="store_true", help="random weights, nothing downloaded")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="default: the model's")
    parser.add_argument("--image", help="an image to embed with onnxruntime and with PyTorch, to compare")
    args = parser.parse_args(argv)

    model = fnc.create_model(args.model, pretrained=not args.no_pretrained, checkpoint_path=args.checkpoint).eval()
    # verify=True runs the file with onnxruntime and fails unless it matches PyTorch.
    path = fnc.export_onnx(model, args.output, input_size=args.input_size, verify=True)
    print(f"wrote {path}")

    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    print(
        f"metadata: {meta['architecture']}, {meta['embed_dim']}-d, input {meta['input_size']}, mean {meta['mean']}, std {meta['std']}"
    )
    if args.image:
        onnx_emb = session.run(["embeddings"], {"images": preprocess(args.image, meta)})[0]
        torch_emb = fnc.extract(model, [args.image], input_size=args.input_size, progress=False)
        err = float(np.abs(onnx_emb - torch_emb).max())
        print(
            f"{args.image}: onnxruntime vs PyTorch max abs difference {err:.2e} "
            f"(embedding max {float(np.abs(torch_emb).max()):.2f})"
        )


if __name__ == "__main__":
    main()
