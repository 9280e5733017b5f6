"""Hugging Face Hub integration: downloads with clear errors, and the models' Hub mixin.

This is the only module that imports ``huggingface_hub`` (STYLE). Downloads go through
``hf_hub_download``, so HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN and the shared cache behave as in
every other Hugging Face library; its errors become fnc-reid errors that name the repo, file
and revision and say how to fix the problem. ``save_pretrained`` / ``from_pretrained`` /
``push_to_hub`` come from ``PyTorchModelHubMixin``; :class:`HubMixin` only adds what fnc-reid
needs: the architecture name in ``config.json``, a re-ID model card, and a loader that reads
safetensors only and is strict.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, ModelCard, ModelCardData, PyTorchModelHubMixin, hf_hub_download
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ._loader import PICKLE_SUFFIXES, PretrainedNotFoundError, UnsafeCheckpointError, check_safetensors_name
from ._pretrained import PretrainedCfg

__all__ = ["HubMixin", "HF_HUB_PREFIX", "CONFIG_NAME", "WEIGHTS_NAME", "parse_hf_hub_name", "download", "hub_endpoint"]

_logger = logging.getLogger(__name__)

HF_HUB_PREFIX = "hf-hub:"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Methods' own papers, for the model card (FNC's is the package's; BFE and BoT are its peers).
_PAPERS = {
    "fnc": ("Further Non-local and Channel Attention Networks for Vehicle Re-identification",
            "https://arxiv.org/abs/2004.12270"),
    "bfe": ("Batch DropBlock Network for Person Re-identification and Beyond", "https://arxiv.org/abs/1811.07130"),
    "baseline": ("Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
                 "https://arxiv.org/abs/1903.07071"),
}
# Fields of PretrainedCfg that describe published weights and travel in config.json.
_CFG_FIELDS = ("tag", "dataset", "metrics", "license", "source", "paper", "input_size", "mean", "std", "interpolation")
_HUB_DATASET_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def hub_endpoint() -> str:
    """The Hub endpoint in use (HF_ENDPOINT, default https://huggingface.co)."""
    return hf_constants.ENDPOINT


def parse_hf_hub_name(name: str) -> tuple[str, str | None]:
    """``"hf-hub:org/repo@rev"`` -> ``("org/repo", "rev")``; no ``@`` gives revision None.

    Example:
        >>> parse_hf_hub_name("hf-hub:org/fnc-cityflow@v1")
        ('org/fnc-cityflow', 'v1')
    """
    repo = name[len(HF_HUB_PREFIX):] if name.startswith(HF_HUB_PREFIX) else name
    repo, _, revision = repo.partition("@")
    if not repo or repo.count("/") > 1:
        raise ValueError(f"{name!r} is not a Hub model id; expected 'hf-hub:org/repo' or 'hf-hub:org/repo@revision'")
    return repo, revision or None


def _at(repo_id: str, revision: str | None) -> str:
    return f"{repo_id}@{revision}" if revision else repo_id


def _pickles_in_repo(repo_id: str, revision: str | None, token: str | bool | None) -> list[str]:
    try:
        files = HfApi(token=token).list_repo_files(repo_id, revision=revision)
    except Exception:  # only a hint for the error message; the original error is what matters
        return []
    return [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]


def _hub_error(
    err: Exception,
    repo_id: str,
    filename: str,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    token: str | bool | None,
) -> Exception:
    """An fnc-reid error for a failed ``hf_hub_download``, naming what was asked and the fix."""
    what = f"{filename!r} of {_at(repo_id, revision)}"
    endpoint = hub_endpoint()
    # LocalEntryNotFoundError first: in huggingface_hub < 1.0 it subclasses EntryNotFoundError.
    if isinstance(err, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        cache = cache_dir or hf_constants.HF_HUB_CACHE
        reason = "offline mode is on (HF_HUB_OFFLINE=1)" if hf_constants.HF_HUB_OFFLINE else f"{endpoint} cannot be reached"
        return PretrainedNotFoundError(
            f"{what} is not in the cache at {cache} and {reason}. Go online once to download it "
            f"(it is cached for later offline use), point cache_dir= at a cache that holds it, or "
            f"pass checkpoint_path=<local .safetensors file>"
        )
    if isinstance(err, GatedRepoError):
        return PretrainedNotFoundError(
            f"{repo_id} on {endpoint} is gated or private and this request has no access; "
            "accept its terms on the Hub and set HF_TOKEN (or run `hf auth login`)"
        )
    if isinstance(err, RepositoryNotFoundError):
        return PretrainedNotFoundError(
            f"Hub repository {repo_id!r} not found on {endpoint}; check the name "
            "(fnc.list_models(pretrained=True) lists the built-in tags), or set HF_TOKEN if it is private"
        )
    if isinstance(err, RevisionNotFoundError):
        return PretrainedNotFoundError(
            f"revision {revision!r} not found in Hub repository {repo_id!r}; use an existing branch, "
            "tag or commit sha, or no revision for 'main'"
        )
    if isinstance(err, EntryNotFoundError):
        if filename == WEIGHTS_NAME:
            pickles = _pickles_in_repo(repo_id, revision, token)
            if pickles:
                return UnsafeCheckpointError(
                    f"Hub repository {_at(repo_id, revision)} has no {WEIGHTS_NAME}, only pickle "
                    f"weights ({', '.join(pickles)}); fnc-reid refuses pickle files for safety and "
                    "does not download them. Ask the owner for a safetensors file, or convert it "
                    "yourself where you trust it (safetensors.torch.save_file) and pass "
                    "checkpoint_path="
                )
        return PretrainedNotFoundError(f"file {filename!r} not found in Hub repository {_at(repo_id, revision)}")
    return err


def download(
    repo_id: str,
    filename: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> str:
    """``hf_hub_download`` with fnc-reid errors; returns the local (cached) path.

    Raises:
        PretrainedNotFoundError: no such repo, revision or file; or offline and not cached.
        UnsafeCheckpointError: the file is a pickle, or the repo only has pickle weights.

    Example:
        >>> path = download("timm/resnet50.tv_in1k", "model.safetensors")  # doctest: +SKIP
    """
    if filename != CONFIG_NAME:
        check_safetensors_name(filename, f" in Hub repository {_at(repo_id, revision)}")
    try:
        return hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )
    except (HfHubHTTPError, EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        mapped = _hub_error(err, repo_id, filename, revision, cache_dir, token)
        if mapped is err:
            raise
        raise mapped from err


def _card_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value > 1 else f"{100 * value:.2f}"
    return str(value)


def _metric(metrics: Mapping[str, Any], *names: str) -> str:
    for name in names:
        if name in metrics:
            return _card_value(metrics[name])
    return "not evaluated"


def _render_card(info: Mapping[str, Any]) -> str:
    """The model card's markdown body (no Jinja, so no extra dependency)."""
    arch, method = info["architecture"], info["architecture"].split("_")[0]
    title, url = _PAPERS.get(method, _PAPERS["fnc"])
    metrics = info.get("metrics") or {}
    c, h, w = info["input_size"]
    repo = info.get("repo_id") or "<org>/<repo>"
    classes = info["num_classes"]
    args = ", ".join(f"{k}={v!r}" for k, v in info["model_args"].items())
    lines = [
        f"# {arch}",
        "",
        "A vehicle re-identification model from [fnc-reid](https://pypi.org/project/fnc-reid/): "
        "it maps a vehicle crop to an embedding; rank a gallery by the Euclidean (or cosine) "
        "distance between embeddings.",
        "",
        "| | |",
        "|---|---|",
        f"| Architecture | `{arch}` ({args}) |",
        f"| Paper | [{title}]({url}) |",
        f"| Training data | {info.get('dataset') or 'not stated'} |",
        f"| Input size | {h} x {w} (H x W), {c} channels RGB in [0, 1], normalised with mean "
        f"{tuple(info['mean'])}, std {tuple(info['std'])}; {info['interpolation']} resize |",
        f"| Embedding | {info['embed_dim']}-d |",
        f"| Classifier | {f'{classes} identities' if classes else 'none (feature extractor)'} |",
        f"| License | {info.get('license') or 'not stated'} |",
    ]
    if info.get("source"):
        lines.append(f"| Initialised from | {info['source']} |")
    lines += [
        "",
        "## Results",
        "",
        f"Dataset: {info.get('dataset') or 'not stated'}. Metrics are percentages.",
        "",
        "| Re-ranking | mAP | rank-1 |",
        "|---|---|---|",
        f"| without | {_metric(metrics, 'mAP', 'map')} | {_metric(metrics, 'rank1', 'rank-1', 'top1')} |",
        f"| with k-reciprocal (k1=75, k2=10, lambda=0.1) | {_metric(metrics, 'mAP_rerank', 'map_rerank')} | "
        f"{_metric(metrics, 'rank1_rerank', 'rank-1_rerank', 'top1_rerank')} |",
        "",
        "## Usage",
        "",
        "```python",
        "# pip install fnc-reid",
        "import fnc, torch",
        "",
        f'model = fnc.create_model("hf-hub:{repo}").eval()',
        f"images = torch.rand(2, {c}, {h}, {w})  # RGB in [0, 1]",
        "mean = torch.tensor(model.pretrained_cfg.mean).view(1, 3, 1, 1)",
        "std = torch.tensor(model.pretrained_cfg.std).view(1, 3, 1, 1)",
        "with torch.no_grad():",
        f"    embeddings = model((images - mean) / std)  # (2, {info['embed_dim']})",
        "```",
        "",
    ]
    return "\n".join(lines)


class HubMixin(
    PyTorchModelHubMixin,
    library_name="fnc-reid",
    tags=["vehicle-re-identification", "re-identification", "image-feature-extraction", "fnc-reid"],
    pipeline_tag="image-feature-extraction",
):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for fnc-reid models.

    Built on ``huggingface_hub.PyTorchModelHubMixin``: ``config.json`` holds the constructor
    arguments (which the mixin records) plus ``architecture`` (the registered name, so
    ``fnc.create_model("hf-hub:org/repo")`` can rebuild it) and ``pretrained_cfg`` (dataset,
    metrics, license, input size, mean/std); weights are ``model.safetensors``; ``README.md`` is a
    re-ID model card. Loading reads safetensors only (never a pickle ``.bin``) and is strict.
    """

    # ------------------------------------------------------------------ what gets written
    def _architecture(self) -> str:
        cfg = getattr(self, "pretrained_cfg", None)
        if cfg is not None and cfg.architecture:
            return cfg.architecture
        # A model built from its class rather than create_model: its registered name, by convention.
        backbone = (self._hub_mixin_config or {}).get("backbone", "")
        return f"{type(self).__name__.lower()}_{backbone}"

    def _publish_info(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """config.json's ``pretrained_cfg`` and the card's fields: the model's cfg, then overrides."""
        cfg = getattr(self, "pretrained_cfg", None) or PretrainedCfg()
        info = {k: getattr(cfg, k) for k in _CFG_FIELDS}
        info.update({k: v for k, v in overrides.items() if v is not None})
        info["metrics"] = dict(info.get("metrics") or {})
        for key in ("input_size", "mean", "std"):
            info[key] = list(info[key])
        return info

    def hub_config(self, **overrides: Any) -> dict[str, Any]:
        """The ``config.json`` that ``save_pretrained`` writes.

        Example:
            >>> import fnc
            >>> cfg = fnc.create_model("fnc_resnet50", num_classes=7).hub_config()
            >>> cfg["architecture"], cfg["num_classes"], cfg["backbone"]
            ('fnc_resnet50', 7, 'resnet50')
        """
        config = dict(self._hub_mixin_config or {})
        # The classifier may have been reset since construction: write what the weights hold.
        config["num_classes"] = self.num_classes
        config["architecture"] = self._architecture()
        info = self._publish_info(overrides)
        config["pretrained_cfg"] = {k: info[k] for k in _CFG_FIELDS}
        return config

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        config: dict | None = None,
        model_card_kwargs: dict[str, Any] | None = None,
        dataset: str | None = None,
        metrics: Mapping[str, float] | None = None,
        license: str | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Write ``config.json``, ``model.safetensors`` and ``README.md`` (the model card) to a folder.

        ``dataset``, ``metrics`` (keys ``mAP``, ``rank1``, ``mAP_rerank``, ``rank1_rerank``) and
        ``license`` override the model's ``pretrained_cfg`` in the config and the card; other
        arguments are the mixin's (``push_to_hub=True``, ``repo_id=``, ...).

        Example:
            >>> import fnc, tempfile
            >>> model = fnc.create_model("baseline_resnet50")
            >>> folder = tempfile.mkdtemp()
            >>> model.save_pretrained(folder, dataset="veri776", metrics={"mAP": 80.1})
            >>> fnc.create_model(checkpoint_path=folder).embed_dim
            2048
        """
        card = dict(model_card_kwargs or {})
        card.update({k: v for k, v in dict(dataset=dataset, metrics=metrics, license=license).items() if v is not None})
        if config is None:
            config = self.hub_config(**{k: v for k, v in card.items() if k in _CFG_FIELDS})
        return super().save_pretrained(save_directory, config=config, model_card_kwargs=card, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        model_card_kwargs: dict[str, Any] | None = None,
        dataset: str | None = None,
        metrics: Mapping[str, float] | None = None,
        license: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Upload config, weights and model card to the Hub repo ``repo_id`` (created if needed).

        Metadata arguments as in :meth:`save_pretrained`; the rest are the mixin's (``private``,
        ``branch``, ``commit_message``, ``token``, ...). Returns the commit URL.

        Example:
            >>> model.push_to_hub("my-org/fnc-se-resnext101-cityflow", dataset="cityflow")  # doctest: +SKIP
        """
        card = dict(model_card_kwargs or {})
        card.update({k: v for k, v in dict(dataset=dataset, metrics=metrics, license=license).items() if v is not None})
        card.setdefault("repo_id", repo_id)
        return super().push_to_hub(repo_id, model_card_kwargs=card, **kwargs)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The re-ID model card: architecture, paper, data, metrics, input size, license, usage."""
        info = self._publish_info({k: v for k, v in kwargs.items() if k in _CFG_FIELDS})
        config = self.hub_config(**{k: v for k, v in kwargs.items() if k in _CFG_FIELDS})
        skip = {"architecture", "pretrained_cfg", "num_classes"}
        info.update(
            architecture=config["architecture"],
            num_classes=config["num_classes"],
            embed_dim=self.embed_dim,
            repo_id=kwargs.get("repo_id"),
            model_args={k: v for k, v in config.items() if k not in skip},
        )
        data = ModelCardData(**self._hub_mixin_info.model_card_data.to_dict())
        data.license = info.get("license") or None
        data.tags = sorted(set(data.tags or []) | {f"arxiv:{_PAPERS['fnc'][1].rsplit('/', 1)[1]}"})
        if info.get("dataset") and _HUB_DATASET_ID.match(str(info["dataset"])):
            data.datasets = [info["dataset"]]
        return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_render_card(info)}")

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any):
        """Load a model saved with ``save_pretrained`` (a folder) or ``push_to_hub`` (a Hub repo id).

        Reads ``config.json`` and ``model.safetensors`` only; a pickle ``pytorch_model.bin`` is
        refused, never unpickled. Returns the model in eval mode (the mixin's convention).
        Calling it on :class:`~fnc.models.ReIDModel` builds whatever architecture the config names.

        Example:
            >>> from fnc.models import ReIDModel
            >>> model = ReIDModel.from_pretrained("my-org/fnc-se-resnext101-cityflow")  # doctest: +SKIP
        """
        source = str(pretrained_model_name_or_path)
        if not os.path.isdir(source):
            # The mixin tolerates a missing config.json; fetch it here so its absence (or a missing
            # repo, revision, or offline cache) is reported as such.
            download(source, CONFIG_NAME, kwargs.get("revision"), kwargs.get("cache_dir"),
                     kwargs.get("force_download", False), kwargs.get("local_files_only", False),
                     kwargs.get("token"))
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict | None = None,
        map_location: str = "cpu",
        proxies: dict | None = None,
        resume_download: bool | None = None,
        **model_kwargs: Any,
    ):
        # Replaces the mixin's loader, whose fallback torch.load()s pytorch_model.bin.
        # proxies / resume_download: passed by huggingface_hub < 1.0, which reads proxies from the
        # environment anyway; accepted so they are not taken for model arguments.
        from ._builder import create_model_from_published

        model = create_model_from_published(
            model_id,
            config=config,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            expected_cls=cls,
            **model_kwargs,
        )
        return model.to(map_location).eval()


def read_published_config(
    source: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> tuple[dict, str]:
    """``config.json`` of a published checkpoint (folder or Hub repo) and a name for messages."""
    from ._loader import CorruptCheckpointError, read_json

    if os.path.isdir(source):
        path = Path(source) / CONFIG_NAME
        if not path.is_file():
            raise PretrainedNotFoundError(
                f"{source!r} has no {CONFIG_NAME}; a checkpoint folder is what save_pretrained() "
                f"writes (config.json + {WEIGHTS_NAME}); for a bare weights file, create the model "
                "by name and pass checkpoint_path=<file.safetensors>"
            )
        return read_json(path), repr(source)
    try:
        path = download(source, CONFIG_NAME, revision, cache_dir, force_download, local_files_only, token)
    except PretrainedNotFoundError as err:
        if f"file {CONFIG_NAME!r} not found" in str(err):
            raise PretrainedNotFoundError(
                f"Hub repository {_at(source, revision)} has no {CONFIG_NAME}, so it was not "
                "published with fnc-reid (model.save_pretrained / push_to_hub); for a bare weights "
                "file, create the model by name and pass checkpoint_path="
            ) from err
        raise
    config = read_json(path, f" of Hub repository {_at(source, revision)}")
    if not isinstance(config.get("architecture"), str):
        raise CorruptCheckpointError(
            f"{CONFIG_NAME} of {_at(source, revision)} names no 'architecture'; it was not written "
            "by fnc-reid's save_pretrained / push_to_hub"
        )
    return config, _at(source, revision)


def published_weights(
    source: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> str:
    """Local path of ``model.safetensors`` of a published checkpoint (folder or Hub repo)."""
    if os.path.isdir(source):
        path = Path(source) / WEIGHTS_NAME
        if not path.is_file():
            pickles = sorted(p.name for p in Path(source).iterdir() if p.name.lower().endswith(PICKLE_SUFFIXES))
            if pickles:
                check_safetensors_name(pickles[0], f" in {source!r} (there is no {WEIGHTS_NAME})")
            raise PretrainedNotFoundError(f"{source!r} has no {WEIGHTS_NAME}")
        return str(path)
    return download(source, WEIGHTS_NAME, revision, cache_dir, force_download, local_files_only, token)


def cfg_from_config(config: Mapping[str, Any], architecture: str, hub_id: str | None) -> PretrainedCfg:
    """The :class:`PretrainedCfg` of a published checkpoint, from its ``config.json``."""
    saved = dict(config.get("pretrained_cfg") or {})
    known = {k: saved[k] for k in _CFG_FIELDS if k in saved}
    for key in ("input_size", "mean", "std"):
        if key in known:
            known[key] = tuple(known[key])
    return PretrainedCfg(
        architecture=architecture,
        hf_hub_id=hub_id,
        weights_format="fnc",
        num_classes=int(config.get("num_classes", 0) or 0),
        **known,
    )
