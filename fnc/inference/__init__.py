"""Inference: images in, re-ID embeddings out, preprocessed as the model says.

>>> import fnc
>>> from fnc.inference import resolve_data_config
>>> resolve_data_config(fnc.create_model("fnc_resnet50")).input_size
(3, 288, 384)
"""

from fnc.data.constants import IMAGE_EXTENSIONS
from fnc.inference.extraction import extract
from fnc.inference.images import ImageLike, as_rgb_image, list_images
from fnc.inference.preprocess import DataConfig, build_eval_transform, resolve_data_config

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataConfig",
    "ImageLike",
    "as_rgb_image",
    "build_eval_transform",
    "extract",
    "list_images",
    "resolve_data_config",
]
