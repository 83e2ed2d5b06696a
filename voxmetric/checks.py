"""Argument checks and the name -> class registry shared by models, losses and optimisers.

Hyper-parameters come from YAML configs, so a wrong type (a string, a float where an
int belongs, a bool where a number belongs) must fail where it enters, with the
field's name and the bad value, rather than deep inside torch.
"""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .errors import ConfigError


def _where(owner: str | None, name: str) -> str:
    return f"{owner}: {name}" if owner else name


def check_int(owner: str | None, name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{_where(owner, name)} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_odd_int(owner: str | None, name: str, value: Any, minimum: int = 1) -> int:
    """Like :func:`check_int`, and odd (symmetric kernels need a centre tap)."""
    check_int(owner, name, value, minimum)
    if value % 2 == 0:
        raise ConfigError(f"{_where(owner, name)} must be odd, got {value!r}")
    return value


def check_float(owner: str | None, name: str, value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    """Return ``float(value)`` if it is a finite number >= ``minimum`` (> when ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{_where(owner, name)} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ConfigError(f"{_where(owner, name)} must be {relation} {minimum:g}, got {value!r}")
    return float(value)


def check_bool(owner: str | None, name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (YAML ``true``/``false``), else raise."""
    if not isinstance(value, bool):
        raise ConfigError(f"{_where(owner, name)} must be true or false, got {value!r}")
    return value


def check_choice(owner: str | None, name: str, value: Any, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise naming the allowed values."""
    if value not in allowed:
        raise ConfigError(f"{_where(owner, name)} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_int_list(owner: str | None, name: str, value: Any, length: int, minimum: int = 1) -> tuple[int, ...]:
    """Return ``value`` as a tuple of ``length`` ints >= ``minimum`` (YAML gives lists)."""
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise ConfigError(f"{_where(owner, name)} must be a list of {length} integers, got {value!r}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item < minimum:
            raise ConfigError(f"{_where(owner, name)} must hold integers >= {minimum}, got {value!r}")
    return tuple(value)


def parse_device(name: Any, what: str = "device"):
    """A usable ``torch.device`` (``cpu``, ``cuda``, ``cuda:N``), or a :class:`ConfigError` naming ``what``."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{what} '{name}' is not a device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{what} is '{name}' but no CUDA device is available here")
    return device


class Registry(Mapping):
    """Classes (or factories) found by name, built from config parameters.

    Args:
        kind: what the entries are (``"model"``, ``"loss"``), quoted in errors.
        entries: canonical name -> class or factory.
        aliases: other accepted names -> canonical name.
        structural: constructor arguments filled in by the caller, never by a config
            (``embedding_dim``, ``num_speakers``): not listed as parameters.

    >>> r = Registry("thing", {"a": dict})
    >>> r.canonical("b")
    Traceback (most recent call last):
    ...
    voxmetric.errors.ConfigError: unknown thing 'b'; allowed: 'a'
    """

    def __init__(self, kind: str, entries: dict[str, Any], aliases: dict[str, str] | None = None,
                 structural: Sequence[str] = ()):
        self.kind = kind
        self.entries = dict(entries)
        self.aliases = dict(aliases or {})
        self.structural = tuple(structural)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.entries or name in self.aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, name: str) -> Any:
        return self.entries[self.canonical(name)]

    def names(self) -> list[str]:
        """Every accepted name: canonical names, then aliases."""
        return list(self.entries) + list(self.aliases)

    def canonical(self, name: Any) -> str:
        """The canonical name of ``name`` (an alias or a canonical name)."""
        if isinstance(name, str) and name in self.aliases:
            name = self.aliases[name]
        if not isinstance(name, str) or name not in self.entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; allowed: {', '.join(map(repr, self.names()))}")
        return name

    def parameters(self, name: str) -> dict[str, Any]:
        """Constructor parameters of ``name`` (structural ones excluded) and their defaults."""
        signature = inspect.signature(self[name])
        return {key: p.default for key, p in signature.parameters.items()
                if key != "self" and key not in self.structural
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def check_params(self, name: str, params: dict[str, Any]) -> None:
        """Raise naming the first parameter ``name`` does not take, and the allowed ones."""
        allowed = self.parameters(name)
        unknown = [key for key in params if key not in allowed]
        if unknown:
            raise ConfigError(
                f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for "
                f"{self.kind} {name!r}; allowed: {', '.join(map(repr, allowed)) or 'none'}"
            )

    def build(self, name: str, params: dict[str, Any], **structural: Any) -> Any:
        """``entries[name](**structural accepted by it, **params)`` after checking ``params``."""
        self.check_params(name, params)
        factory = self[name]
        accepted = inspect.signature(factory).parameters
        return factory(**{k: v for k, v in structural.items() if k in accepted}, **params)


def int_at_least(minimum: int):
    """An argparse ``type``: an integer >= ``minimum``, else a usage error naming the option
    (``argument --top: must be at least 2, got -5``, exit status 2 with the command's usage)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def same_model(fingerprint_a: str | None, fingerprint_b: str | None) -> bool:
    """Whether two model fingerprints (``name:sha256:HEX``) identify the same network.

    Only the digest of the configuration and weights counts: the name part is the file's
    stem, so a renamed or copied weights file (``best.pt`` -> ``model.pt``, an export of a
    bundled model) is the same model. Strings without a digest compare whole.
    """
    def digest(fingerprint: str | None) -> str | None:
        if isinstance(fingerprint, str) and ":sha256:" in fingerprint:
            return fingerprint.split(":sha256:", 1)[1]
        return fingerprint

    return digest(fingerprint_a) == digest(fingerprint_b)
