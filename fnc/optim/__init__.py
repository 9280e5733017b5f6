"""Optimiser and learning-rate schedule of the FNC recipe: Ranger (RAdam + Lookahead), warm-up + steps."""

from fnc.optim.ranger import Ranger
from fnc.optim.scheduler import build_scheduler

__all__ = ["Ranger", "build_scheduler"]
