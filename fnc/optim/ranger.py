"""Ranger: RAdam (Liu et al. 2020) with Lookahead (Zhang et al. 2019), the FNC paper's optimiser.

Built on ``torch.optim.RAdam``: the fast weights take RAdam steps, and every ``k`` steps the slow
weights move a fraction ``alpha`` towards them and the fast weights are reset to the slow ones.
The slow weights live in the optimiser state and the Lookahead step counter in each parameter
group, so ``state_dict()`` / ``load_state_dict()`` resume a run exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim import RAdam
from torch.optim.optimizer import ParamsT

__all__ = ["Ranger"]


class Ranger(RAdam):
    """RAdam + Lookahead.

    Defaults follow the reference Ranger (Wright, 2019): ``betas=(0.95, 0.999)``, ``eps=1e-5``,
    ``k=6``, ``alpha=0.5``, and weight decay applied decoupled from the gradient (as Ranger does,
    i.e. AdamW-style). RAdam's variance rectification turns on when the SMA length exceeds 5,
    which is both torch's and Ranger's threshold. The paper gives only "Ranger" and the learning
    rates (3.5e-4 peak), so ``lr`` defaults to that peak.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (the scheduler scales it).
        betas: RAdam's moment coefficients.
        eps: RAdam's denominator epsilon.
        weight_decay: weight decay factor.
        decoupled_weight_decay: decay the weights directly (Ranger, AdamW) instead of adding L2 to
            the gradient.
        k: Lookahead synchronisation period, in optimiser steps.
        alpha: Lookahead slow-weight step size; 1 reduces Ranger to RAdam.
        **kwargs: passed to ``torch.optim.RAdam`` (``foreach``, ``maximize``, ...).

    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = Ranger([w], lr=0.1)
    >>> w.sum().backward(); opt.step()
    >>> opt.state_dict()["param_groups"][0]["lookahead_step"]
    1
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 3.5e-4,
        betas: tuple[float, float] = (0.95, 0.999),
        eps: float = 1e-5,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = True,
        k: int = 6,
        alpha: float = 0.5,
        **kwargs,
    ) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"Lookahead k must be a positive int, got {k!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead alpha must be in (0, 1], got {alpha}")
        # Set before RAdam's __init__, which calls add_param_group for the initial groups.
        self._lookahead_defaults = {"lookahead_k": k, "lookahead_alpha": alpha}
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            **kwargs,
        )
        self.defaults.update(self._lookahead_defaults)

    def add_param_group(self, param_group: dict) -> None:
        # Groups added later (e.g. unfrozen layers) get their own Lookahead counter.
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for key, value in self._lookahead_defaults.items():
            group.setdefault(key, value)
        group.setdefault("lookahead_step", 0)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One RAdam step on the fast weights, then a Lookahead sync every ``k`` steps.

        Args:
            closure: re-evaluates the model and returns the loss (optional).

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            # Evaluated here, not inside RAdam, so the gradients exist when the slow weights
            # are first captured below.
            with torch.enable_grad():
                loss = closure()
        # The slow weights start at the weights before the first update (Lookahead, Alg. 1).
        # They are stored after RAdam's step because RAdam initialises a parameter's state only
        # when that state is still empty.
        with torch.no_grad():
            first_seen = {
                p: p.detach().clone()
                for group in self.param_groups
                for p in group["params"]
                if p.grad is not None and "slow_buffer" not in self.state[p]
            }
        # Call RAdam's step without its profiling/hook wrapper: this class's own step is already
        # wrapped, and running user step hooks twice per step would be wrong.
        radam_step = RAdam.step
        if getattr(radam_step, "hooked", False):
            radam_step = radam_step.__wrapped__
        radam_step(self)
        for p, slow in first_seen.items():
            self.state[p]["slow_buffer"] = slow
        with torch.no_grad():
            for group in self.param_groups:
                group["lookahead_step"] += 1
                if group["lookahead_step"] % group["lookahead_k"] != 0:
                    continue
                for p in group["params"]:
                    slow = self.state[p].get("slow_buffer")
                    if slow is None:
                        continue
                    slow.lerp_(p.detach(), group["lookahead_alpha"])
                    p.copy_(slow)
        return loss
