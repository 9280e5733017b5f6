"""The models' Hub mixin: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``.

``huggingface_hub.PyTorchModelHubMixin`` writes the folder and uploads it; this adapter adds
what fnc-reid needs: the architecture name and the weights' :class:`PretrainedCfg` fields in
``config.json``, the re-ID model card (:mod:`fnc.models._card`), metric checking (fractions in
[0, 1]), and loading through the one factory path (``create_model``), so a published checkpoint is
read as safetensors only and strictly, never by the mixin's ``torch.load`` fallback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, PyTorchModelHubMixin

from ._builder import resolve_source
from ._card import model_card
from ._factory import create_model_from_source
from ._hub import HF_HUB_PREFIX, HubOptions
from ._pretrained import PUBLISHED_FIELDS, PretrainedCfg, check_metrics

__all__ = ["HubMixin"]

_HUB_ARGS = tuple(f.name for f in fields(HubOptions))


def _card_overrides(model_card_kwargs: Mapping[str, Any] | None, **given: Any) -> dict[str, Any]:
    card = dict(model_card_kwargs or {})
    card.update({k: v for k, v in given.items() if v is not None})
    if card.get("metrics") is not None:
        card["metrics"] = check_metrics(card["metrics"])
    return card


class HubMixin(
    PyTorchModelHubMixin,
    library_name="fnc-reid",
    tags=["vehicle-re-identification", "re-identification", "image-feature-extraction", "fnc-reid"],
    pipeline_tag="image-feature-extraction",
):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for fnc-reid models.

    ``config.json`` holds the constructor arguments (which the mixin records) plus
    ``architecture`` (the registered name, so ``fnc.create_model("hf-hub:org/repo")`` can rebuild
    it) and ``pretrained_cfg`` (dataset, metrics as fractions, license, input size, mean/std);
    weights are ``model.safetensors``; ``README.md`` is a re-ID model card.
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
        info = {k: getattr(cfg, k) for k in PUBLISHED_FIELDS}
        info.update({k: v for k, v in overrides.items() if v is not None})
        info["metrics"] = check_metrics(info.get("metrics"))
        for key in ("input_size", "mean", "std"):
            info[key] = list(info[key])
        return info

    def hub_config(self, **overrides: Any) -> dict[str, Any]:
        """The ``config.json`` that ``save_pretrained`` writes.

        Raises:
            ValueError: a metric outside [0, 1] (metrics are fractions).

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
        config["pretrained_cfg"] = {k: info[k] for k in PUBLISHED_FIELDS}
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

        ``dataset``, ``metrics`` (fractions in [0, 1], keys ``mAP``, ``rank1``, ``mAP_rerank``,
        ``rank1_rerank``) and ``license`` override the model's ``pretrained_cfg`` in the config
        and the card; other arguments are the mixin's (``push_to_hub=True``, ``repo_id=``, ...).

        Raises:
            ValueError: a metric outside [0, 1], e.g. a percentage.

        Example:
            >>> import fnc, tempfile
            >>> model = fnc.create_model("baseline_resnet50")
            >>> folder = tempfile.mkdtemp()
            >>> model.save_pretrained(folder, dataset="veri776", metrics={"mAP": 0.801})
            >>> fnc.create_model(checkpoint_path=folder).pretrained_cfg.metrics
            {'mAP': 0.801}
        """
        card = _card_overrides(model_card_kwargs, dataset=dataset, metrics=metrics, license=license)
        if config is None:
            config = self.hub_config(**{k: v for k, v in card.items() if k in PUBLISHED_FIELDS})
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

        Metadata arguments as in :meth:`save_pretrained` (checked before anything is created);
        the rest are the mixin's (``private``, ``branch``, ``commit_message``, ``token``, ...).
        Returns the commit URL.

        Example:
            >>> model.push_to_hub("my-org/fnc-se-resnext101-cityflow", dataset="cityflow")  # doctest: +SKIP
        """
        card = _card_overrides(model_card_kwargs, dataset=dataset, metrics=metrics, license=license)
        self._publish_info({k: v for k, v in card.items() if k in PUBLISHED_FIELDS})
        card.setdefault("repo_id", repo_id)
        return super().push_to_hub(repo_id, model_card_kwargs=card, **kwargs)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The re-ID model card: architecture, paper, data, metrics (as %), input size, license, usage."""
        overrides = {k: v for k, v in kwargs.items() if k in PUBLISHED_FIELDS}
        info = self._publish_info(overrides)
        config = self.hub_config(**overrides)
        skip = {"architecture", "pretrained_cfg", "num_classes"}
        info.update(
            architecture=config["architecture"],
            num_classes=config["num_classes"],
            embed_dim=self.embed_dim,
            repo_id=kwargs.get("repo_id"),
            model_args={k: v for k, v in config.items() if k not in skip},
        )
        return model_card(info, self._hub_mixin_info.model_card_data)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, map_location: str = "cpu", **kwargs: Any):
        """Load a model saved with ``save_pretrained`` (a folder) or ``push_to_hub`` (a Hub repo id).

        Goes through ``create_model``'s path: ``config.json`` names the architecture, weights are
        ``model.safetensors`` only (a pickle ``pytorch_model.bin`` is refused, never unpickled)
        and loading is strict. The classifier the config records is kept unless ``num_classes=``
        says otherwise. Returns the model in eval mode (the mixin's convention). Calling it on
        :class:`~fnc.models.ReIDModel` builds whatever architecture the config names.

        Args:
            pretrained_model_name_or_path: a folder, or a Hub repo id ``org/repo``.
            map_location: device for the model.
            **kwargs: the Hub options (``revision``, ``cache_dir``, ``force_download``,
                ``local_files_only``, ``token``) and architecture arguments.

        Example:
            >>> from fnc.models import ReIDModel
            >>> model = ReIDModel.from_pretrained("my-org/fnc-se-resnext101-cityflow")  # doctest: +SKIP
        """
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), map_location=map_location, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu", **kwargs: Any):
        # Replaces the mixin's loader, whose fallback torch.load()s pytorch_model.bin.
        hub = HubOptions(**{k: kwargs.pop(k) for k in _HUB_ARGS if k in kwargs})
        if os.path.isdir(model_id):
            source = resolve_source(checkpoint_path=model_id, hub=hub)
        else:
            source = resolve_source(HF_HUB_PREFIX + model_id, hub=hub)
        model = create_model_from_source(source, expected_cls=cls, **kwargs)
        return model.to(map_location).eval()
