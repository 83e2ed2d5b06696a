"""Optimisers and learning-rate schedules, found by name like models and losses.

``optimizer.name`` is a key of :data:`OPTIMIZERS`; ``schedule.name`` a key of
:data:`SCHEDULES`. A schedule maps the optimiser-step count to a multiplier of
``optimizer.lr``; ``schedule.warmup_batches`` ramps it linearly from 0 first,
whatever the schedule.

Fine-tuning splits the parameters in two groups (:func:`parameter_groups`): the loss
head at ``optimizer.lr`` and the network at ``optimizer.lr * optimizer.network_lr_scale``,
both following the schedule; the network's factor (:func:`network_lr_factor`) is 0 while
it is frozen (``training.freeze_network_batches``) and restarts the warm-up when it is
unfrozen.
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


def split_rates(config) -> bool:
    """Whether the network and the loss head get parameter groups of their own."""
    return config.optimizer.network_lr_scale != 1.0 or config.training.freeze_network_batches > 0


def parameter_groups(config, network: torch.nn.Module, head: torch.nn.Module) -> list:
    """What the optimiser updates: ``[head at lr, network at lr * network_lr_scale]`` when
    :func:`split_rates`, else one group of every parameter (network first), as runs
    without these options always had, so that their checkpoints still resume."""
    if not split_rates(config):
        return [*network.parameters(), *head.parameters()]
    lr = config.optimizer.lr
    return [{"params": list(head.parameters()), "lr": lr},
            {"params": list(network.parameters()), "lr": lr * config.optimizer.network_lr_scale}]


def build_optimizer(config, network: torch.nn.Module, head: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimiser ``config.optimizer`` names, over :func:`parameter_groups`."""
    return OPTIMIZERS[config.optimizer.name](parameter_groups(config, network, head), config.optimizer)


def build_scheduler(config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """Each parameter group's rate times its factor after each optimiser step: :func:`lr_factor`
    for the head (or the single group), :func:`network_lr_factor` for the network."""
    factors = [lambda b: lr_factor(config, b), lambda b: network_lr_factor(config, b)]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors[:len(optimizer.param_groups)])


def lr_factor(config, batch: int) -> float:
    """Multiplier of the base learning rate after ``batch`` optimiser steps."""
    s = config.schedule
    if s.warmup_batches and batch < s.warmup_batches:
        return (batch + 1) / s.warmup_batches
    return SCHEDULES[s.name](batch, config)


def network_lr_factor(config, batch: int) -> float:
    """Multiplier of the network's rate (``lr * network_lr_scale``) after ``batch`` steps.

    0 while the network is frozen (``batch < training.freeze_network_batches``); then the
    schedule's :func:`lr_factor`, capped by a warm-up ramp of ``schedule.warmup_batches``
    restarted at the unfreezing: the network's optimiser state starts there (Adam's first
    steps are about ``lr`` per weight whatever the gradient), so it eases in rather than
    jumps. Without freezing this is :func:`lr_factor` exactly.
    """
    frozen, warmup = config.training.freeze_network_batches, config.schedule.warmup_batches
    if batch < frozen:
        return 0.0
    factor = lr_factor(config, batch)
    if frozen and warmup:
        factor = min(factor, (batch - frozen + 1) / warmup)
    return factor
