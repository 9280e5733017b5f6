"""Re-ID data: dataset readers returning ``(path, pid, camid)`` records, image loading, transforms
and the P x K identity sampler.

A leaf package: torch, torchvision, numpy and PIL only; it never imports models or training code.

>>> from fnc.data import read_dataset, ImageDataset, PKSampler, build_transforms  # doctest: +SKIP
>>> ds = read_dataset("veri:/data/VeRi")  # doctest: +SKIP
>>> sampler = PKSampler([r.pid for r in ds.train], num_instances=4, batch_size=64)  # doctest: +SKIP
"""

from fnc.data.cityflow import read_cityflow, read_name_list, read_train_label_xml
from fnc.data.dataset import CorruptImageError, ImageDataset, load_image
from fnc.data.market import read_market1501
from fnc.data.records import Record, ReIDDataset, holdout_identities, relabel
from fnc.data.registry import FORMATS, read_dataset
from fnc.data.sampler import PKSampler
from fnc.data.table import read_csv
from fnc.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms
from fnc.data.vehicleid import read_vehicleid, vehicleid_trials
from fnc.data.veri import read_veri776
from fnc.data.veriwild import read_veriwild

__all__ = [
    "FORMATS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CorruptImageError",
    "ImageDataset",
    "PKSampler",
    "ReIDDataset",
    "Record",
    "build_transforms",
    "holdout_identities",
    "load_image",
    "read_cityflow",
    "read_csv",
    "read_dataset",
    "read_market1501",
    "read_name_list",
    "read_train_label_xml",
    "read_vehicleid",
    "read_veri776",
    "read_veriwild",
    "relabel",
    "vehicleid_trials",
]
