"""Training: the paper's recipe (FNC Sec. 3.4, 4.2) as a small ``Trainer`` and ``fit``.

One epoch = P x K batches from :class:`~fnc.data.PKSampler` -> forward (AMP on GPU) -> Eq. 7 loss
-> Ranger step; after it the warm-up / step schedule advances, the model is evaluated every
``eval_every`` epochs, and ``OUTPUT/last`` is written atomically with everything a resume needs.
``OUTPUT/best`` holds the model with the best mAP. Both are ``save_pretrained`` folders. Each
epoch's row (loss terms, lr, speed, time, metrics) goes to ``Trainer.history`` and, through
:mod:`fnc.engine.history`, to ``OUTPUT/metrics.jsonl`` and ``OUTPUT/curves.png``; progress is a
bar on a terminal and a few log lines per epoch elsewhere (:mod:`fnc.engine.progress`).

Under ``torchrun`` the same code runs DDP: every rank takes a slice of whole identities of each
global batch, the losses see the gathered global batch (see :mod:`fnc.engine.distributed`), and
rank 0 logs, evaluates and writes.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_model
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from fnc.data.dataset import ImageDataset
from fnc.data.records import ReIDDataset
from fnc.data.registry import read_dataset
from fnc.data.sampler import PKSampler
from fnc.data.transforms import build_transforms
from fnc.data.workers import resolve_num_workers
from fnc.engine.checkpoint import (
    BEST,
    LAST,
    MODEL_FILE,
    STATE_FILE,
    CheckpointError,
    check_checkpoint_destination,
    get_rng_state,
    load_state_tree,
    read_checkpoint,
    recover_checkpoint,
    save_training_folder,
    set_rng_state,
)
from fnc.engine.config import TrainConfig
from fnc.engine.distributed import DistInfo, convert_sync_batchnorm, gather_with_grad, init_distributed
from fnc.engine.history import CURVES_FILE, METRICS_FILE, RunHistory, require_tensorboard
from fnc.engine.outputs import check_output_files
from fnc.engine.progress import EpochProgress
from fnc.engine.publish import push_checkpoint
from fnc.evaluation.model import evaluate_model, infer_protocol
from fnc.inference.preprocess import resolve_data_config
from fnc.losses.center import BranchCenterLoss, WithCenterLoss
from fnc.losses.reid import ReIDLoss
from fnc.optim.ranger import Ranger
from fnc.optim.scheduler import build_scheduler as warmup_multistep

__all__ = ["TrainConfig", "Trainer", "fit"]

logger = logging.getLogger(__name__)

# Fields that may change between a run and its resume without changing what is computed
# (num_workers: augmentations are seeded per image, see build_train_loader).
_RESUME_FREE = {"epochs", "eval_every", "num_workers", "device", "progress", "rerank", "eval_batch_size", "tensorboard"}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _pick_device(name: str | None, info: DistInfo) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank)
    return device


class Trainer:
    """Train a re-ID model with the paper's recipe; checkpoint, evaluate, resume.

    Construction prepares everything (classifier sized to the training identities, data loader,
    Ranger, schedule, DDP when launched by ``torchrun``); :meth:`fit` runs the epochs. Each part
    comes from a build step a subclass can override, as fast-reid's ``DefaultTrainer.build_*``:
    :meth:`setup_runtime`, :meth:`build_model`, :meth:`build_train_loader`,
    :meth:`build_optimizer`, :meth:`build_scheduler`, :meth:`build_criterion`; evaluation is
    :meth:`evaluate`.

    Args:
        model: a fnc-reid model, e.g. ``fnc.create_model("fnc_se_resnext101", pretrained=True)``.
            Its classifier is reset to the number of training identities if it differs.
        data: a :class:`~fnc.data.ReIDDataset` or a ``"FORMAT:PATH"`` string for
            :func:`~fnc.data.read_dataset`. Its ``train`` split is trained on; its ``query`` /
            ``gallery`` (if any) evaluate.
        output_dir: where ``last/`` and ``best/`` go; ``None`` writes nothing (no resume).
        config: the recipe; ``None`` = :class:`TrainConfig` defaults.
        eval_data: a dataset whose query / gallery evaluate instead of ``data``'s.
        **overrides: :class:`TrainConfig` fields, e.g. ``epochs=60``.

    Attributes:
        model: the model being trained (unwrapped, also under DDP).
        history: one dict per finished epoch (``epoch`` from 1, loss and its terms, lr, images/s,
            time, metrics when evaluated): the rows of ``OUTPUT/metrics.jsonl``.
        best_metrics: metrics of the best evaluated epoch so far (empty before any evaluation).

    Example:
        >>> import fnc
        >>> from fnc.engine import Trainer
        >>> class SGDTrainer(Trainer):
        ...     def build_optimizer(self, model):
        ...         return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        >>> model = fnc.create_model("fnc_se_resnext101", pretrained=True)  # doctest: +SKIP
        >>> trainer = Trainer(model, "veri:/data/VeRi", "runs/veri", epochs=120)  # doctest: +SKIP
        >>> trainer.fit()  # doctest: +SKIP
        {'mAP': 0.81, 'rank1': 0.96, 'rank5': 0.98, 'rank10': 0.99, 'mINP': 0.44}
    """

    def __init__(
        self,
        model: nn.Module,
        data: ReIDDataset | str,
        output_dir: str | Path | None = None,
        config: TrainConfig | None = None,
        *,
        eval_data: ReIDDataset | str | None = None,
        **overrides: Any,
    ) -> None:
        cfg = dataclasses.replace(config or TrainConfig(), **overrides)
        if cfg.input_size is not None:
            cfg.input_size = tuple(int(s) for s in cfg.input_size)
        self.config = cfg
        self.data = _as_dataset(data)
        eval_source = self.data if eval_data is None else _as_dataset(eval_data)
        self.eval_data = eval_source if eval_source.query and eval_source.gallery else None
        self.output_dir = None if output_dir is None else Path(output_dir)
        if cfg.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {cfg.epochs}")
        if not self.data.train:
            raise ValueError(f"{self.data.name or 'the dataset'} has no training images")
        if self.output_dir is not None:
            # Before any work: a folder named last/ or best/ that fnc-reid did not write is never replaced.
            for name in (LAST, BEST):
                check_checkpoint_destination(self.output_dir / name)
            # The run's history files are replaced only when they belong to an fnc-reid run in this
            # folder (its checkpoint is there); a user's own metrics.jsonl / curves.png never are.
            if not any((self.output_dir / name / STATE_FILE).is_file() for name in (LAST, BEST)):
                check_output_files(
                    [self.output_dir / METRICS_FILE, self.output_dir / CURVES_FILE],
                    flag="another output_dir (they are not from an fnc-reid run here)",
                )
        if cfg.tensorboard:
            if self.output_dir is None:
                raise ValueError("tensorboard=True writes under output_dir; pass an output_dir or tensorboard=False")
            require_tensorboard()  # before any work, not after the first epoch
        #: DataLoader workers of training and evaluation (``config.num_workers`` resolved).
        self.num_workers = resolve_num_workers(cfg.num_workers)

        self.device, self.dist = self.setup_runtime()
        self.model = self.build_model(model)
        self._param_dtype = next(self.model.parameters()).dtype
        self._net: nn.Module = self.model
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._net = DistributedDataParallel(self.model, device_ids=ids)
        self.data_config = resolve_data_config(self.model, cfg.input_size)
        self.input_size = self.data_config.hw
        pcfg = getattr(self.model, "pretrained_cfg", None)
        if pcfg is not None and tuple(pcfg.input_size) != self.data_config.input_size:
            # Saved checkpoints then say the size the weights were trained at, and loading them
            # (create_model(checkpoint_path=...), fnc.extract) uses it by default.
            self.model.pretrained_cfg = dataclasses.replace(pcfg, input_size=self.data_config.input_size)

        self.loader = self.build_train_loader()
        self.sampler = self.loader.sampler
        self.optimizer = self.build_optimizer(self.model)
        self.scheduler = self.build_scheduler(self.optimizer)
        self.criterion = self.build_criterion()
        self._broadcast_criterion()
        self.center_optimizer = self.build_center_optimizer(self.criterion)
        self.amp = (self.device.type == "cuda") if cfg.amp is None else bool(cfg.amp)
        bf16 = self.device.type != "cuda" or torch.cuda.is_bf16_supported()
        self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        # float16 needs loss scaling against underflow; bfloat16 has float32's range.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp and self.amp_dtype == torch.float16)

        self.epoch = 0  # the next epoch to run
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best_metrics: dict[str, float] = {}
        self.best_epoch: int | None = None
        self._run_history: RunHistory | None = None
        if self.output_dir is not None and self._is_main():
            self._run_history = RunHistory(self.output_dir, tensorboard=cfg.tensorboard)

    # ------------------------------------------------------------------ build steps
    # Called once each by __init__, in this order; override one in a subclass to change that part
    # of the recipe (as fast-reid's DefaultTrainer.build_*). They may read self.config, self.data,
    # self.device and self.dist; build_train_loader and later also self.model and self.data_config.

    def setup_runtime(self) -> tuple[torch.device, DistInfo]:
        """The device and the process group (DDP under ``torchrun``); seeds the RNGs.

        Returns:
            ``(device, dist)``.
        """
        cfg = self.config
        dist_info = init_distributed(_pick_device(cfg.device, DistInfo()))
        device = _pick_device(cfg.device, dist_info)
        _seed_everything(cfg.seed + dist_info.rank)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        return device, dist_info

    def build_model(self, model: nn.Module) -> nn.Module:
        """Prepare the model: classifier sized to the training identities, on the device.

        Args:
            model: the model given to the trainer.

        Returns:
            The (unwrapped) model to train; DDP wraps it afterwards.
        """
        cfg = self.config
        num_ids = self.data.num_train_pids
        if getattr(model, "num_classes", num_ids) != num_ids:
            logger.info("classifier reset from %d to %d identities", model.num_classes, num_ids)
            model.reset_classifier(num_ids)
        if cfg.grad_checkpointing:
            model.set_grad_checkpointing(True)
        if cfg.sync_bn and self.dist.distributed:
            model = convert_sync_batchnorm(model, self.device)
        return model.to(self.device)

    def build_train_loader(self) -> DataLoader:
        """P x K batches of augmented training images.

        Returns:
            A DataLoader whose ``sampler`` has ``set_epoch``, ``state_dict`` and
            ``load_state_dict`` (checkpoints store its position), as :class:`~fnc.data.PKSampler`.
        """
        cfg = self.config
        dc = self.data_config
        transform = build_transforms(
            dc.hw,
            dc.mean,
            dc.std,
            train=True,
            flip_p=cfg.flip_p,
            padding=cfg.padding,
            erase_p=cfg.erase_p,
            interpolation=dc.interpolation,
        )
        # Seeded: each image's augmentation comes from (seed, epoch, place in the batch sequence), not
        # from a worker's RNG, so the number of workers (free to change on resume) changes nothing.
        sampler = PKSampler(
            self.data.train, num_instances=cfg.num_instances, batch_size=cfg.batch_size, seed=cfg.seed, seeded=True
        )
        return DataLoader(
            ImageDataset(self.data.train, transform, skip_corrupt=cfg.skip_corrupt),
            batch_size=sampler.local_batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Ranger (RAdam + Lookahead) over the trainable parameters, the paper's optimiser.

        Args:
            model: the model :meth:`build_model` returned.
        """
        cfg = self.config
        params = [p for p in model.parameters() if p.requires_grad]
        return Ranger(
            params,
            lr=cfg.lr,
            betas=tuple(cfg.betas),
            weight_decay=cfg.weight_decay,
            k=cfg.lookahead_k,
            alpha=cfg.lookahead_alpha,
        )

    def build_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        """Linear warm-up, then step decay at the milestones; stepped once per epoch.

        Args:
            optimizer: the optimiser :meth:`build_optimizer` returned.
        """
        cfg = self.config
        return warmup_multistep(optimizer, cfg.warmup_epochs, cfg.milestones, cfg.gamma, cfg.warmup_factor)

    def build_criterion(self) -> nn.Module:
        """Eq. 7: ID (label-smoothed cross-entropy) plus batch-hard triplet loss over the branches.

        Returns:
            A module called as ``criterion(branches, pids) -> (loss, parts)``, as
            :class:`~fnc.losses.ReIDLoss`.
        """
        cfg = self.config
        criterion = ReIDLoss(cfg.id_weight, cfg.triplet_weight, cfg.margin, cfg.label_smoothing)
        if cfg.center_weight > 0:
            criterion = WithCenterLoss(criterion, self.build_center_loss(), cfg.center_weight)
        return criterion.to(self.device)

    def build_center_loss(self) -> BranchCenterLoss:
        """BoT's center loss, one :class:`~fnc.losses.CenterLoss` per branch sized from its BNNeck.

        Only built when ``center_weight > 0``; its centres train with :meth:`build_center_optimizer`.

        Raises:
            ValueError: the model has no BNNeck branches to read the feature widths from.
        """
        necks = self.model.bnnecks() if hasattr(self.model, "bnnecks") else []
        if not necks:
            raise ValueError(
                f"center_weight={self.config.center_weight} needs a fnc-reid model whose branches end in a "
                "BNNeck (their widths size the centres); pass center_weight=0 or override build_center_loss"
            )
        # bnnecks() lists the branches in module order, which is each model's output order.
        return BranchCenterLoss(self.data.num_train_pids, [neck.in_features for neck in necks])

    def build_center_optimizer(self, criterion: nn.Module) -> torch.optim.Optimizer | None:
        """SGD over the criterion's own parameters (the centres) at ``center_lr``, as BoT trains them.

        Separate from the network's Ranger, with no warm-up or schedule. Returns ``None`` when the
        criterion has no parameters (``center_weight == 0``).

        Args:
            criterion: what :meth:`build_criterion` returned.
        """
        params = [p for p in criterion.parameters() if p.requires_grad]
        if not params:
            return None
        return torch.optim.SGD(params, lr=self.config.center_lr)

    # ------------------------------------------------------------------ public API
    def fit(self, resume: bool | str | Path = False) -> dict[str, float]:
        """Train until ``config.epochs``, checkpointing after every epoch.

        Args:
            resume: ``True`` continues from ``output_dir/last`` if it exists (a run killed before
                its first checkpoint starts over); a path continues from that checkpoint folder.

        Returns:
            The best evaluation metrics (fractions: ``mAP``, ``rank1``, ``rank5``, ``rank10``,
            ``mINP``), or the last epoch's training stats if nothing was evaluated.
        """
        if resume:
            path = (
                self.output_dir / LAST
                if resume is True and self.output_dir
                else Path(resume)
                if resume is not True
                else None
            )
            if path is None:
                raise ValueError("resume=True needs output_dir (or pass the checkpoint folder)")
            found = recover_checkpoint(path) if self._is_main() else path
            self._barrier()
            if found is None or not Path(path).exists():
                if resume is not True:
                    raise CheckpointError(f"no checkpoint to resume at {path}")
                logger.info("no checkpoint at %s yet: starting from scratch", path)
            else:
                self.load_checkpoint(path)
        elif self.output_dir is not None and self._is_main():
            recover_checkpoint(self.output_dir / LAST)
        if self.output_dir is not None and self._is_main():
            recover_checkpoint(self.output_dir / BEST)
        cfg = self.config
        last_stats: dict[str, Any] = {}
        while self.epoch < cfg.epochs:
            epoch = self.epoch
            last_stats = self.train_one_epoch(epoch)
            self.scheduler.step()
            metrics: dict[str, float] = {}
            due = epoch + 1 == cfg.epochs or (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0)
            if due and self.eval_data is not None:
                eval_start = time.perf_counter()
                metrics = self.evaluate() if self._is_main() else {}
                if metrics:
                    metrics["eval_time_s"] = time.perf_counter() - eval_start
                logger.info("epoch %d: %s", epoch + 1, _fmt({k: v for k, v in metrics.items() if k != "eval_time_s"}))
            improved = bool(metrics) and (not self.best_metrics or metrics["mAP"] > self.best_metrics["mAP"])
            if improved:
                self.best_metrics, self.best_epoch = {k: v for k, v in metrics.items() if k != "eval_time_s"}, epoch + 1
            # Epochs count from 1 in the rows, as in the log and in trainer_state.json's "epoch".
            self.history.append({"epoch": epoch + 1, **last_stats, **metrics})
            self.epoch = epoch + 1
            self._write_checkpoints(best=improved or (self.eval_data is None and self.epoch == cfg.epochs))
            self.write_history()
        if self._run_history is not None:
            self._run_history.close()
        return dict(self.best_metrics) if self.best_metrics else dict(last_stats)

    def write_history(self) -> None:
        """Rewrite ``OUTPUT/metrics.jsonl`` and ``OUTPUT/curves.png`` (and TensorBoard) from
        :attr:`history`; main process only, nothing without an ``output_dir``.

        Called after every epoch's checkpoint; see :mod:`fnc.engine.history` for the row format.
        """
        if self._run_history is not None:
            self._run_history.write(self.history)

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the P x K batches of ``epoch``.

        Returns:
            Epoch means of the total ``loss`` and of each ``loss_<term>`` the criterion reports
            (``id``, ``triplet``, ...; not its per-branch parts), ``lr``, ``images_per_s``,
            ``epoch_time_s`` and ``steps``.
        """
        cfg = self.config
        self._net.train()
        self.sampler.set_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        total, count = 0.0, 0
        terms: dict[str, float] = {}
        start = time.perf_counter()
        progress = EpochProgress(
            self.loader, f"epoch {epoch + 1}/{cfg.epochs}", enabled=cfg.progress and self._is_main()
        )
        for batch_images, pids, _ in progress:
            loss, parts = self.train_step(batch_images, pids)
            total += loss
            count += 1
            for key, value in parts.items():
                if "/" not in key:  # per-branch parts sum into the terms
                    terms[key] = terms.get(key, 0.0) + value
            progress.update(
                len(pids) * self.dist.world_size, loss=loss, **{k: parts[k] for k in parts if "/" not in k}, lr=lr
            )
        progress.close()
        elapsed = time.perf_counter() - start
        stats: dict[str, float] = {"loss": total / max(count, 1)}
        stats.update({f"loss_{k}": v / max(count, 1) for k, v in terms.items()})
        stats.update(lr=lr, images_per_s=progress.images / max(elapsed, 1e-9), epoch_time_s=elapsed, steps=count)
        if self.center_optimizer is not None:
            stats["center"] = terms.get("center", 0.0) / max(count, 1)
        if self._is_main():
            shown = ", ".join(f"{k[5:]} {v:.4f}" for k, v in stats.items() if k.startswith("loss_"))
            logger.info(
                "epoch %d/%d: loss %.4f%s, lr %.2e, %.1f images/s, %d steps in %.1f s",
                epoch + 1,
                cfg.epochs,
                stats["loss"],
                f" ({shown})" if shown else "",
                lr,
                stats["images_per_s"],
                count,
                elapsed,
            )
        return stats

    def train_step(self, images: torch.Tensor, pids: torch.Tensor) -> tuple[float, dict[str, float]]:
        """Forward, Eq. 7 loss over the global batch, backward and one Ranger step.

        Returns:
            The loss and its parts as floats (the same on every rank).
        """
        # Inputs follow the weights' dtype (float32, or float64 for exact comparisons); autocast
        # lowers precision from there.
        images = images.to(self.device, dtype=self._param_dtype, non_blocking=True)
        pids = pids.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            outputs = self._net(images)
        # The losses run in at least float32, on the global batch: see fnc.engine.distributed.
        branches = [(_loss_input(o.feat), None if o.logits is None else _loss_input(o.logits)) for o in outputs]
        loss, parts = self.criterion(branches, self._gather_pids(pids))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at step {self.global_step}; lower lr or check the data (amp={self.amp})"
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.center_optimizer is not None:
            self.center_optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        if self.center_optimizer is not None:
            self._step_centers()
        self.scaler.update()
        self.global_step += 1
        return loss.item(), {k: v.item() for k, v in parts.items()}

    @torch.no_grad()
    def evaluate(self, data: ReIDDataset | None = None) -> dict[str, float]:
        """mAP / CMC / mINP of the current model on query vs gallery (and re-ranked if configured).

        Args:
            data: a dataset with query and gallery; default the trainer's evaluation data.

        Returns:
            Fractions ``mAP``, ``rank1``, ``rank5``, ``rank10``, ``mINP`` (plus ``*_rerank``).
        """
        data = data or self.eval_data
        if data is None:
            raise ValueError("no query/gallery to evaluate on; pass eval_data or a dataset with query and gallery")
        cfg = self.config
        # Evaluation must not move the training RNG streams (its DataLoaders draw seeds), so that
        # when and how often a run evaluates never changes what it trains.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return evaluate_model(
                self.model,
                data,
                protocol=cfg.protocol or infer_protocol(data),
                input_size=self.input_size,
                batch_size=cfg.eval_batch_size,
                num_workers=self.num_workers,
                device=self.device,
                rerank=cfg.rerank,
                k1=cfg.rerank_k1,
                k2=cfg.rerank_k2,
                lambda_value=cfg.rerank_lambda,
            )

    def state_dict(self) -> dict[str, Any]:
        """Everything besides the weights that a resume needs (tensors allowed)."""
        rng = get_rng_state()
        if self.dist.distributed:
            every = [None] * self.dist.world_size
            dist.all_gather_object(every, rng)
            rng_states = every
        else:
            rng_states = [rng]
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": rng_states,
        }
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        if self.center_optimizer is not None:
            state["criterion"] = self.criterion.state_dict()
            state["center_optimizer"] = self.center_optimizer.state_dict()
        return state

    def load_checkpoint(self, folder: str | Path) -> None:
        """Restore model, optimiser, schedule, sampler, RNG and counters from a ``last`` folder.

        Raises:
            CheckpointError: the folder is incomplete or corrupt (its manifest does not match).
        """
        folder = Path(folder)
        meta = read_checkpoint(folder)  # verifies the manifest
        state = load_state_tree(folder, meta)
        self._check_resume_config(meta.get("config", {}), folder)
        load_model(self.model, str(folder / MODEL_FILE), strict=True, device=str(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self._load_center_state(state, folder)
        rng_states = state["rng"]
        if len(rng_states) == self.dist.world_size:
            set_rng_state(rng_states[self.dist.rank])
        else:
            logger.warning(
                "checkpoint was written by %d processes, this run has %d: RNG streams reseeded, "
                "so augmentations will differ from an uninterrupted run",
                len(rng_states),
                self.dist.world_size,
            )
            _seed_everything(self.config.seed + self.dist.rank + 1000 * int(meta["epoch"]))
        self.epoch = int(meta["epoch"])
        self.global_step = int(meta.get("global_step", 0))
        self.history = list(meta.get("history", []))
        self.best_metrics = dict(meta.get("best_metrics", {}))
        self.best_epoch = meta.get("best_epoch")
        logger.info("resumed from %s at epoch %d/%d", folder, self.epoch, self.config.epochs)

    def push_to_hub(self, repo_id: str, which: str = BEST, **kwargs: Any) -> str:
        """Publish ``output_dir/<which>`` (``best`` or ``last``) with :func:`~fnc.engine.publish.push_checkpoint`.

        The model card gets the dataset format and the checkpoint's metrics, as ``fnc-reid push`` does.

        Args:
            repo_id: ``org/name`` on the Hub (created if needed; needs HF_TOKEN).
            which: the checkpoint folder to publish.
            **kwargs: passed to ``push_checkpoint`` (``private``, ``license``, ``commit_message``, ...).

        Returns:
            The commit URL.
        """
        if self.output_dir is None:
            raise ValueError("this trainer has no output_dir to publish from")
        return push_checkpoint(self.output_dir / which, repo_id, **kwargs)

    # ------------------------------------------------------------------ internals
    def _broadcast_criterion(self) -> None:
        # The criterion is not inside DDP, so its parameters (the centres) start as rank 0's here.
        if self.dist.distributed:
            for p in self.criterion.parameters():
                dist.broadcast(p.data, 0)

    def _step_centers(self) -> None:
        """BoT's centre update: the unscaled gradient divided by ``center_weight``, then SGD."""
        opt = self.center_optimizer
        self.scaler.unscale_(opt)
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if self.dist.distributed:
            # Every rank sees the gathered batch, so this only guards against drift between them.
            for g in grads:
                dist.all_reduce(g)
                g.div_(self.dist.world_size)
        for g in grads:
            g.mul_(1.0 / self.config.center_weight)
        self.scaler.step(opt)

    def _load_center_state(self, state: dict[str, Any], folder: Path) -> None:
        if self.center_optimizer is None:
            return
        if "criterion" not in state:
            logger.warning(
                "%s has no center-loss state (written with center_weight=0): the centres start afresh", folder
            )
            return
        self.criterion.load_state_dict({k: v.to(self.device) for k, v in state["criterion"].items()})
        self.center_optimizer.load_state_dict(state["center_optimizer"])

    def _is_main(self) -> bool:
        return self.dist.is_main

    def _barrier(self) -> None:
        if self.dist.distributed:
            dist.barrier()

    def _gather_pids(self, pids: torch.Tensor) -> torch.Tensor:
        if not self.dist.distributed:
            return pids
        parts = [torch.empty_like(pids) for _ in range(self.dist.world_size)]
        dist.all_gather(parts, pids)
        return torch.cat(parts)

    def _check_resume_config(self, saved: dict[str, Any], folder: Path) -> None:
        now = self.config.to_dict()
        changed = {k: (saved[k], now[k]) for k in saved if k in now and k not in _RESUME_FREE and saved[k] != now[k]}
        if changed:
            listed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in changed.items()))
            logger.warning(
                "resuming %s with a changed recipe (%s); the result will differ from an uninterrupted run",
                folder,
                listed,
            )

    def _meta(self) -> dict[str, Any]:
        cfg = getattr(self.model, "pretrained_cfg", None)
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "architecture": getattr(cfg, "architecture", type(self.model).__name__),
            "dataset": self.data.name,
            "world_size": self.dist.world_size,
            "config": self.config.to_dict(),
            "history": self.history,
            "best_metrics": self.best_metrics,
            "best_epoch": self.best_epoch,
            "metrics": self.history[-1] if self.history else {},
        }

    def _write_checkpoints(self, best: bool) -> None:
        # Every rank takes part in gathering RNG states; only rank 0 writes.
        state = self.state_dict() if self.output_dir is not None else None
        if self.output_dir is not None and self._is_main():
            meta = self._meta()
            # The card names the dataset format, not a local path.
            card = {"dataset": self.data.name.partition(":")[0] or None, "metrics": _card_metrics(self.history[-1])}
            if best:
                # best before last: a crash in between resumes from the previous epoch, which
                # re-trains this one identically and rewrites best.
                save_training_folder(
                    self.output_dir / BEST, self.model, None, dict(meta, metrics=self.history[-1]), card
                )
            save_training_folder(self.output_dir / LAST, self.model, state, meta, card)
            logger.info("saved %s%s", self.output_dir / LAST, " and best" if best else "")
        self._barrier()


def _as_dataset(data: ReIDDataset | str) -> ReIDDataset:
    return read_dataset(data) if isinstance(data, str) else data


def _loss_input(x: torch.Tensor) -> torch.Tensor:
    return gather_with_grad(x.to(torch.promote_types(x.dtype, torch.float32)))


def _card_metrics(stats: dict[str, Any]) -> dict[str, float] | None:
    keys = ("mAP", "rank1", "rank5", "rank10", "mINP", "mAP_rerank", "rank1_rerank")
    picked = {k: float(stats[k]) for k in keys if k in stats}
    return picked or None


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2%}" for k, v in metrics.items()) or "not evaluated"


def fit(
    model: nn.Module,
    data: ReIDDataset | str,
    output_dir: str | Path | None = None,
    *,
    resume: bool | str | Path = False,
    eval_data: ReIDDataset | str | None = None,
    config: TrainConfig | None = None,
    **overrides: Any,
) -> Trainer:
    """Train ``model`` on ``data`` with the paper's recipe; the one-call form of :class:`Trainer`.

    Args:
        model: a fnc-reid model (its classifier is sized to the training identities).
        data: a :class:`~fnc.data.ReIDDataset` or ``"FORMAT:PATH"`` (cityflow, veri, market, csv).
        output_dir: where ``last/`` (resumable) and ``best/`` (best mAP) checkpoints go.
        resume: continue from ``output_dir/last`` (``True``) or from a given checkpoint folder.
        eval_data: dataset whose query / gallery evaluate instead of ``data``'s.
        config: the recipe; fields can also be given as keyword arguments.
        **overrides: :class:`TrainConfig` fields (``epochs``, ``lr``, ``batch_size``, ...).

    Returns:
        The finished :class:`Trainer` (``.model``, ``.history``, ``.best_metrics``).

    Example:
        >>> import fnc
        >>> model = fnc.create_model("fnc_se_resnext101", pretrained=True)  # doctest: +SKIP
        >>> trainer = fnc.fit(model, "veri:/data/VeRi", "runs/veri")  # doctest: +SKIP
        >>> trainer.best_metrics["mAP"]  # doctest: +SKIP
        0.81
    """
    trainer = Trainer(model, data, output_dir, config, eval_data=eval_data, **overrides)
    trainer.fit(resume=resume)
    return trainer
