"""Optimisers and learning-rate schedules, found by name like models and losses.

``optimizer.name`` is a key of :data:`OPTIMIZERS`; ``schedule.name`` a key of
:data:`SCHEDULES`. A schedule maps the optimiser-step count to a multiplier of
``optimizer.lr``; ``schedule.warmup_batches`` ramps it linearly from 0 first,
whatever the schedule.
"""

from __future__ import annotations

import math

import torch

from ..checks import Registry


def _sgd(parameters, o) -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def _adam(parameters, o) -> torch.optim.Optimizer:
    return torch.optim.Adam(parameters, lr=o.lr, weight_decay=o.weight_decay)


def _adamw(parameters, o) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=o.lr, weight_decay=o.weight_decay)


OPTIMIZERS = Registry("optimizer", {"sgd": _sgd, "adam": _adam, "adamw": _adamw})
"""``name -> factory(parameters, optimizer config)``; the seed uses SGD at a constant 0.01."""


def _constant(batch: int, config) -> float:
    return 1.0


def _step(batch: int, config) -> float:
    s = config.schedule
    return s.gamma ** (batch // s.step_batches)


def _cosine(batch: int, config) -> float:
    """Half a cosine from 1 to ``min_lr / lr`` over the training batches after warm-up."""
    s = config.schedule
    total = config.training.epochs * config.training.batches_per_epoch
    progress = min(1.0, (batch - s.warmup_batches) / max(1, total - s.warmup_batches))
    floor = s.min_lr / config.optimizer.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


SCHEDULES = Registry("schedule", {"constant": _constant, "step": _step, "cosine": _cosine})
"""``name -> factor(batch, config)``."""


def build_optimizer(config, parameters) -> torch.optim.Optimizer:
    """The optimiser ``config.optimizer`` names, over ``parameters``."""
    return OPTIMIZERS[config.optimizer.name](parameters, config.optimizer)


def lr_factor(config, batch: int) -> float:
    """Multiplier of the base learning rate after ``batch`` optimiser steps."""
    s = config.schedule
    if s.warmup_batches and batch < s.warmup_batches:
        return (batch + 1) / s.warmup_batches
    return SCHEDULES[s.name](batch, config)
