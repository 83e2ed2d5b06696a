"""What a training run is built from: device, corpus, batches, network and loss, and the
validation that picks the best checkpoint (through the one front-end)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..checks import parse_device
from ..data.splits import split_speakers
from ..errors import ConfigError, CorpusError, TrialsError
from ..losses.distill import distillation
from . import distributed
from .config import Config


class TrainStep(nn.Module):
    """Network and loss as one module, so that DDP averages the gradients of both.

    With a ``teacher`` (``distill:``), the loss is the training loss plus ``distill_weight``
    times :func:`~voxmetric.losses.distill.relational_distillation` of the network's and the
    teacher's embeddings of the same chunks. The teacher is held outside the module tree: not
    trained, not in ``state_dict()`` (nor checkpoints), not seen by DDP or the optimiser,
    always in eval mode; moves and dtype casts of the step reach it. ``distill_kind`` and
    ``temperature`` choose another distillation loss (:func:`voxmetric.losses.distill.distillation`).
    With ``label_loss=False`` the distillation term is the whole loss: the loss head gets no
    gradient and the labels only shape the batches.
    """

    def __init__(self, model: nn.Module, loss: nn.Module, teacher: nn.Module | None = None,
                 distill_weight: float = 1.0, label_loss: bool = True, distill_kind: str = "relational",
                 temperature: float = 0.1):
        super().__init__()
        if teacher is None and not label_loss:
            raise ValueError("TrainStep without the label loss needs a teacher")
        self.model = model
        self.loss = loss
        object.__setattr__(self, "teacher", teacher)  # not a submodule: see the docstring
        self.distill_weight = distill_weight
        self.label_loss = label_loss
        self.distill = distillation(distill_kind, temperature)
        sizes = (getattr(model, "embedding_dim", None), getattr(teacher, "embedding_dim", None))
        if distill_kind == "embedding" and None not in sizes and sizes[0] < sizes[1]:
            raise ConfigError(f"distill.kind embedding needs a student embedding at least as large as the "
                              f"teacher's: model.params.embedding_dim is {sizes[0]}, the teacher's {sizes[1]}")

    def _apply(self, fn, recurse=True):
        if self.teacher is not None:
            self.teacher._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def forward(self, waveforms: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.model(waveforms)
        loss = self.loss(embeddings.float(), labels) if self.label_loss else embeddings.new_zeros(())
        if self.teacher is not None:
            with torch.no_grad():
                targets = self.teacher(waveforms)
            loss = loss + self.distill_weight * self.distill(embeddings, targets)
        return loss, embeddings


def build_teacher(config: Config) -> nn.Module | None:
    """The frozen teacher network of ``distill.teacher`` (eval mode, no gradients), or None."""
    if not config.distill.teacher:
        return None
    from ..inference.speaker_model import load_model

    teacher = load_model(config.distill.teacher).network
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if distributed.is_distributed() and torch.cuda.is_available():
            return torch.device("cuda", distributed.local_rank())
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return parse_device(name, "training.device")


def pool_corpora(parts, roots):
    """Several corpora read as one training corpus.

    An utterance id found in two of them is a :class:`CorpusError` naming both folders (two
    copies of one corpus, or two built-in corpora made with different seeds, whose names
    collide); a speaker name found in several is one speaker (:func:`shared_speakers` lists them).
    """
    from ..data.corpus import Corpus

    first_root: dict[str, str] = {}
    for root, part in zip(roots, parts):
        for utterance in part:
            if utterance.uid in first_root:
                raise CorpusError(
                    f"utterance id '{utterance.uid}' is in both {first_root[utterance.uid]} and {root}: "
                    "data.corpus lists the same corpus twice, or corpora whose speaker and file names "
                    "collide (rename one's speaker folders)"
                )
            first_root[utterance.uid] = root
    return Corpus([u for part in parts for u in part], root=roots[0])


def shared_speakers(corpus, roots) -> dict[str, list[str]]:
    """Speaker names whose utterances come from more than one of ``roots``, with those roots."""
    where: dict[str, set[str]] = {}
    # Absolute, not resolved: a reader builds each path under its root, links included.
    resolved = [(root, Path(root).absolute()) for root in roots]
    for utterance in corpus:
        path = Path(utterance.path).absolute()
        for root, absolute in resolved:
            if path.is_relative_to(absolute):
                where.setdefault(utterance.speaker, set()).add(root)
                break
    return {speaker: [r for r in roots if r in found] for speaker, found in sorted(where.items()) if len(found) > 1}


def build_corpus(config: Config):
    """The training corpus: ``data.corpus`` (one folder or several, pooled), speakers
    with less than ``data.min_speaker_duration_s`` of audio left out (named in its
    ``left_out``, and by :func:`describe_run`)."""
    from ..data.corpus import Corpus, nested_speakers
    from ..data.readers import read_corpus

    roots = config.data.corpus if isinstance(config.data.corpus, list) else [config.data.corpus]
    if not any(roots):
        raise ConfigError("data.corpus is required: the folder of the training corpus")
    for root in roots:
        if not os.path.exists(root):
            raise CorpusError(f"{root}: no such directory (data.corpus; relative paths in the config, and in --set, "
                              f"are relative to the config file's folder)")
    parts = [read_corpus(root, config.data.format, strict=config.data.strict) for root in roots]
    if config.data.split:
        parts = [part.subset(split_speakers(root, config.data.split)) for root, part in zip(roots, parts)]
    corpus = parts[0] if len(parts) == 1 else pool_corpora(parts, roots)
    if config.data.num_speakers is not None:
        corpus = corpus.subset(nested_speakers(corpus.speakers, config.data.num_speakers))
    kept = corpus.with_min_duration(config.data.min_speaker_duration_s)
    if len(kept.speakers) * (1 + len(config.data.speed_perturb)) < config.data.speakers_per_batch:
        raise ConfigError(
            f"data.speakers_per_batch is {config.data.speakers_per_batch} but only {len(kept.speakers)} "
            f"speakers of {', '.join(roots)} have at least data.min_speaker_duration_s="
            f"{config.data.min_speaker_duration_s} s of audio"
        )
    return kept


def build_dataset(config: Config, corpus, start_batch: int = 0):
    from ..data.augment import Augmentation
    from ..data.sampler import ChunkBatches

    augmentation = None
    if config.data.augmentation is not None:
        a = config.data.augmentation
        augmentation = Augmentation(
            noise_dir=a.noise_dir, rir_dir=a.rir_dir, snr_db=tuple(a.snr_db),
            noise_prob=a.noise_prob if a.noise_dir else 0.0, rir_prob=a.rir_prob if a.rir_dir else 0.0,
            band_limit_prob=a.band_limit_prob, eq_tilt_prob=a.eq_tilt_prob,
            eq_tilt_db_per_octave=a.eq_tilt_db_per_octave, gain_db=None if a.gain_db is None else tuple(a.gain_db),
            codec_prob=a.codec_prob, codec_cutoffs_hz=tuple(a.codec_cutoffs_hz),
        )
    return ChunkBatches(
        corpus,
        speakers_per_batch=config.data.speakers_per_batch,
        chunks_per_speaker=config.data.chunks_per_speaker,
        chunk_duration_s=config.data.chunk_duration_s,
        seed=config.seed,
        augmentation=augmentation,
        rank=distributed.rank(),
        world_size=distributed.world_size(),
        start_batch=start_batch,
        speed_factors=tuple(config.data.speed_perturb),
    )


def class_labels(config: Config, corpus) -> list[str]:
    """The training classes: the corpus' speakers, then their speed-perturbed copies
    (``data.speed_perturb``), in the order of the batches' labels."""
    from ..data.sampler import perturbed_speakers

    return perturbed_speakers(corpus.speakers, config.data.speed_perturb)


def build_model_and_loss(config: Config, num_speakers: int) -> tuple[nn.Module, nn.Module]:
    from ..losses import build_loss
    from ..models import build_model

    model = build_model(config.model.name, **config.model.params)
    loss = build_loss(config.loss.name, embedding_dim=model.embedding_dim, num_speakers=num_speakers,
                      **config.loss.params)
    if loss.requires_pairs and config.data.chunks_per_speaker < 2:
        raise ConfigError(
            f"loss '{config.loss.name}' learns from pairs of chunks of one speaker: "
            f"set data.chunks_per_speaker >= 2 (it is {config.data.chunks_per_speaker})"
        )
    if config.init_from:
        from ..inference.speaker_model import load_network_weights

        load_network_weights(model, config.init_from)
    return model, loss


def frontend_settings(config: Config):
    """The :class:`~voxmetric.inference.frontend.FrontendSettings` of ``config.frontend``."""
    from ..inference.frontend import FrontendSettings

    return FrontendSettings.from_dict(dataclasses.asdict(config.frontend))


def check_inputs(config: Config) -> list[Path]:
    """What a run reads besides its corpus, checked before any training: the validation trial
    list and every file it names (resolved as validation will resolve them; returned), and the
    noise and impulse-response folders of the augmentation.

    Raises:
        TrialsError: the list is missing, unreadable, empty, or names files that do not exist.
        ConfigError: an augmentation folder does not exist.
    """
    from ..data.trials import key_paths, read_trials, trial_keys, trial_root

    paths: list[Path] = []
    if config.validation.trials:
        trials = read_trials(config.validation.trials)
        keys = trial_keys(trials)
        if not keys:
            raise TrialsError(f"{config.validation.trials}: no trials (validation.trials)")
        paths = key_paths(keys, trial_root(config.validation.trials, config.validation.root, keys[0]),
                          config.validation.trials)
    augmentation = config.data.augmentation
    for key in ("noise_dir", "rir_dir"):
        folder = getattr(augmentation, key, None) if augmentation is not None else None
        if folder and not Path(folder).is_dir():
            raise ConfigError(f"data.augmentation.{key}: no such folder {folder}")
    return paths


def warn_validation_leak(validation_paths: list[Path], corpus) -> None:
    """Warn when validation files are training files too (the same file, through any link):
    the best checkpoint and the front-end would then be chosen on speech the network trained on."""
    # Links keep file names: only training files named like a validation file are resolved, so
    # a corpus of a million files costs a string operation each, not a path resolution.
    names = {os.path.basename(p) for p in validation_paths}
    training = {os.path.realpath(u.path) for u in corpus if os.path.basename(u.path) in names}
    shared = [p for p in validation_paths if os.path.realpath(p) in training]
    if shared:
        warnings.warn(f"validation: {len(shared)} of its {len(validation_paths)} files are training files too "
                      f"(e.g. {shared[0]}): best.pt and the front-end would be chosen on speech the network "
                      f"trains on; hold the validation speakers out of data.corpus", stacklevel=2)


def validate(model: nn.Module, config: Config, device: torch.device, progress: bool = False) -> float | None:
    """EER (%) of the model on the validation trials through the one front-end, or None
    when there are none."""
    if not config.validation.trials:
        return None
    from ..evaluate.pipeline import evaluate_trials
    from ..inference.frontend import Frontend
    from ..inference.prepared_cache import shared_prepared_cache

    # The validation files are read, trimmed and scaled once per process, not once per epoch.
    frontend = Frontend(model, frontend_settings(config), device, cache=shared_prepared_cache())
    result = evaluate_trials(frontend, config.validation.trials, config.validation.root, n_bootstrap=0,
                             progress=progress)
    return result["cosine"]["eer"] * 100


SPEAKERS_NAMED = 5
"""How many speakers a line of :func:`describe_run` names before '... and N more'."""


def _some_speakers(seconds: dict[str, float], label: str = "") -> str:
    """``'a (8.2 s), b (3.0 s) and 3 more'``: the first :data:`SPEAKERS_NAMED` of ``seconds``."""
    named = ", ".join(f"{speaker} ({label}{s:.1f} s)" for speaker, s in list(seconds.items())[:SPEAKERS_NAMED])
    return named + (f" and {len(seconds) - SPEAKERS_NAMED} more" if len(seconds) > SPEAKERS_NAMED else "")


def _speakers(count: int) -> str:
    return f"{count} speaker" + ("" if count == 1 else "s")


def _corpus_notes(config: Config, corpus) -> list[str]:
    """What :func:`build_corpus` did to speakers that a run's summary must say: those
    ``data.min_speaker_duration_s`` left out, and those whose every file is shorter than
    ``data.chunk_duration_s`` (each of their chunks is a whole file tiled to the chunk length)."""
    lines = []
    if corpus.left_out:
        lines.append(f"left out {_speakers(len(corpus.left_out))} with less than "
                     f"{config.data.min_speaker_duration_s:g} s of audio (data.min_speaker_duration_s): "
                     f"{_some_speakers(corpus.left_out)}")
    chunk_s = config.data.chunk_duration_s
    longest = {speaker: max(u.duration_s for u in utterances)
               for speaker, utterances in sorted(corpus.by_speaker().items())}
    short = {speaker: s for speaker, s in longest.items() if s < chunk_s}
    if short:
        lines.append(f"tiled chunks: {_speakers(len(short))} {'has' if len(short) == 1 else 'have'} only files "
                     f"shorter than data.chunk_duration_s={chunk_s:g} s, so each of their chunks is a whole file "
                     f"repeated to that length: {_some_speakers(short, 'longest ')}")
    return lines


def describe_run(config: Config, corpus, resumed_at=None) -> list[str]:
    """Lines saying what a run trains on (and which speakers it left out or tiles:
    :func:`_corpus_notes`), from what (its initial weights, or with ``resumed_at`` =
    ``(epochs, batches, checkpoint)`` the checkpoint it resumes from)."""
    roots = config.data.corpus if isinstance(config.data.corpus, list) else [config.data.corpus]
    lines = [f"corpus: {len(corpus.speakers)} speakers, {len(corpus)} utterances, "
             f"{corpus.total_duration_s / 3600:.2f} hours ({', '.join(roots)})"
             + (f"; speed-perturbed copies x {', x '.join(f'{f:g}' for f in config.data.speed_perturb)}: "
                f"{len(class_labels(config, corpus))} classes"
                if config.data.speed_perturb else "")]
    lines += _corpus_notes(config, corpus)
    if resumed_at is None:  # a resumed run's weights come from its checkpoint (the last line)
        lines.append(f"initialised from {config.init_from}" if config.init_from
                     else "initialised from scratch (random weights)")
    if len(roots) > 1:
        shared = shared_speakers(corpus, roots)
        if shared:
            name, where = next(iter(shared.items()))
            lines.append(f"note: {len(shared)} speaker name(s) are in more than one corpus folder (e.g. '{name}' in "
                         f"{' and '.join(where)}); each is trained as one speaker: rename one folder's speakers "
                         "if they are different people")
    if config.distill.teacher:
        kind = {"relational": "relational", "embedding": "embedding cosine",
                "softmax": f"softmax relational at temperature {config.distill.temperature:g}"}[config.distill.kind]
        lines.append(f"distilling from {config.distill.teacher} ({kind}, weight {config.distill.weight:g}"
                     + ("" if config.distill.label_loss else f"; no {config.loss.name} loss: the teacher alone")
                     + ")")
    frozen, scale = config.training.freeze_network_batches, config.optimizer.network_lr_scale
    if frozen or scale != 1.0:
        lines.append((f"network frozen for the first {frozen} batches (loss head only), then " if frozen else
                      "network ") + f"at optimizer.lr x {scale:g}, loss head at optimizer.lr")
    if resumed_at is not None:
        epochs, batches, checkpoint = resumed_at
        per_epoch = config.training.batches_per_epoch
        lines.append(f"resuming at epoch {epochs + 1}, batch {batches - epochs * per_epoch + 1} "
                     f"({batches} batches done) from {checkpoint}")
    return lines
