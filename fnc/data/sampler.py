"""P x K identity sampler for batch-hard triplet training, deterministic, resumable and DDP-aware."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["PKSampler"]


class PKSampler(Sampler[Any]):
    """Yields dataset indices (or ``(index, seed)`` pairs, ``seeded=True``) in batches of P identities x K images each (BoT's 16 x 4 = 64 by default, docs/design.md).

    Each epoch, every identity's images are shuffled and cut into chunks of K; identities with
    fewer than K images are sampled with replacement up to K, and up to K-1 leftover images of an
    identity sit out that epoch (different ones every epoch), as in BoT. Batches are then formed by
    drawing P distinct identities among those with chunks left, until fewer than P remain. An
    epoch therefore holds about ``len(pids) / batch_size`` batches; ``len()`` is exact for the
    current epoch.

    The sequence depends only on ``seed`` and the epoch given to :meth:`set_epoch`. Under DDP
    every rank builds the same global batches and rank ``r`` takes the ``r``-th slice of
    ``batch_size / num_replicas`` indices of each, i.e. ``P / num_replicas`` whole identities;
    ``batch_size`` is the global batch, and each rank's DataLoader uses
    ``batch_size=sampler.local_batch_size`` (no shuffle, no ``drop_last`` needed). Batch-hard
    mining then runs within each rank's slice.

    Resuming: ``state_dict()`` records the epoch and how many global batches were consumed;
    after ``load_state_dict()`` the next iteration continues with the following batch. Because a
    DataLoader with workers prefetches, pass the number of batches the training loop actually
    finished: ``sampler.state_dict(batches_done=i)``. :meth:`set_epoch` with the epoch already
    loaded keeps the resume point; a resume point applies to one iteration only.

    Args:
        pids: identity label of each dataset item (ints, or records with ``.pid``).
        num_instances: K, images per identity in a batch.
        batch_size: P x K, the global batch size.
        seed: base seed of the shuffling.
        num_replicas: DDP world size; default: the initialised process group's, else 1.
        rank: this process's rank; default: the process group's, else 0.
        seeded: yield ``(index, sample_seed)`` pairs instead of indices, for
            :class:`~fnc.data.ImageDataset`, which then draws each image's augmentation from its
            own seed. The seed depends only on ``seed``, the epoch and the image's place in the
            global batch sequence, so augmentations (and a resumed run's weights) do not depend on
            how many DataLoader workers load the images, nor on which worker loads which image.

    >>> sampler = PKSampler([0, 0, 1, 1, 2, 2, 3, 3], num_instances=2, batch_size=4)
    >>> sampler.set_epoch(0)
    >>> len(sampler), sampler.local_batch_size
    (8, 4)
    """

    def __init__(
        self,
        pids: Sequence[int] | Sequence[Any],
        num_instances: int = 4,
        batch_size: int = 64,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        seeded: bool = False,
    ) -> None:
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if num_instances < 1 or batch_size < 1 or batch_size % num_instances:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of num_instances ({num_instances})"
            )
        num_ids = batch_size // num_instances
        if num_ids % num_replicas:
            raise ValueError(
                f"{num_ids} identities per batch cannot be split evenly over {num_replicas} processes; "
                f"make batch_size a multiple of num_instances * num_replicas = {num_instances * num_replicas}"
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        labels = [int(getattr(p, "pid", p)) for p in pids]
        self._by_pid: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(labels):
            self._by_pid[pid].append(i)
        if len(self._by_pid) < num_ids:
            raise ValueError(
                f"a batch needs {num_ids} identities (batch_size {batch_size} / num_instances {num_instances}) "
                f"but the data has only {len(self._by_pid)}; lower batch_size"
            )
        self.num_samples = len(labels)
        self.num_instances = num_instances
        self.batch_size = batch_size
        self.num_ids_per_batch = num_ids
        self.local_batch_size = batch_size // num_replicas
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.seeded = seeded
        self.epoch = 0
        self._start_batch = 0
        self._consumed = 0
        self._plan: list[np.ndarray] | None = None
        self._plan_key: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose sequence the next iteration yields (call before each epoch)."""
        if epoch != self.epoch:
            self._start_batch = 0
        self.epoch = epoch

    def _global_batches(self) -> list[np.ndarray]:
        key = (self.seed, self.epoch)
        if self._plan is not None and self._plan_key == key:
            return self._plan
        rng = np.random.default_rng([self.seed, self.epoch])
        k = self.num_instances
        chunks: dict[int, list[np.ndarray]] = {}
        for pid in sorted(self._by_pid):
            idxs = np.asarray(self._by_pid[pid])
            idxs = rng.choice(idxs, size=k, replace=True) if len(idxs) < k else rng.permutation(idxs)
            chunks[pid] = [idxs[i * k : (i + 1) * k] for i in range(len(idxs) // k)]
        available = sorted(chunks)
        batches = []
        while len(available) >= self.num_ids_per_batch:
            picked = [available[i] for i in rng.choice(len(available), size=self.num_ids_per_batch, replace=False)]
            batches.append(np.concatenate([chunks[pid].pop() for pid in picked]))
            available = [pid for pid in available if chunks[pid]]
        self._plan, self._plan_key = batches, key
        return batches

    def __len__(self) -> int:
        """Indices this rank yields in the next iteration (after any resume point)."""
        return max(0, len(self._global_batches()) - self._start_batch) * self.local_batch_size

    def __iter__(self) -> Iterator[int]:
        batches = self._global_batches()
        start, self._start_batch = self._start_batch, 0
        lo = self.rank * self.local_batch_size
        self._consumed = start
        for b in range(start, len(batches)):
            part: list[Any] = batches[b][lo : lo + self.local_batch_size].tolist()
            if self.seeded:
                # One seed per place in the global batch: the same on every rank and worker layout.
                seeds = np.random.SeedSequence([self.seed % 2**63, self.epoch, b]).generate_state(self.batch_size)
                part = list(zip(part, seeds[lo : lo + self.local_batch_size].tolist()))
            yield from part[:-1]
            # Counted before the batch's last index leaves, so that a consumer holding the whole
            # batch sees it as consumed.
            self._consumed = b + 1
            yield part[-1]

    def state_dict(self, batches_done: int | None = None) -> dict[str, int]:
        """The position in the sequence.

        Args:
            batches_done: global batches of the current epoch that training finished; default:
                batches this sampler has handed out, which runs ahead of training under a
                prefetching DataLoader.

        Returns:
            A JSON-able dict for :meth:`load_state_dict`.
        """
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "batches_done": self._consumed if batches_done is None else int(batches_done),
            "batch_size": self.batch_size,
            "num_instances": self.num_instances,
            "num_samples": self.num_samples,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the sequence saved by :meth:`state_dict` (the world size may differ).

        Raises:
            ValueError: the state was saved for a different dataset size or batch layout.
        """
        for key in ("batch_size", "num_instances", "num_samples"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"sampler state was saved with {key}={state[key]} but this sampler has {getattr(self, key)}; "
                    "resume with the same dataset and batch settings"
                )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self._start_batch = int(state["batches_done"])
        self._consumed = self._start_batch
