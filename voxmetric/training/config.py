"""Experiment configuration: one YAML file, defaults in one place, unknown keys fail.

The schema is the tree of dataclasses below; their field defaults are the only
defaults. :func:`load_config` merges a YAML file (and ``key.path=value``
overrides) onto them and rejects, before any work starts, an unknown key, a
value of the wrong type or an impossible value, naming the field.

Model and loss hyper-parameters are free mappings (``model.params``,
``loss.params``): they are checked by the model and loss registries, which
name the bad parameter and list the allowed ones.
"""

from __future__ import annotations

import copy
import re
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, OverrideError
from ..evaluate.extract import DEFAULT_STEP_S, DEFAULT_WINDOW_S
from ..evaluate.metrics import DEFAULT_N_BOOTSTRAP
from ..evaluate.scoring import DEFAULT_TOP_N
from ..fileio import atomic_open
from .schema import build_strict
from .optim import OPTIMIZERS, SCHEDULES


@dataclass
class AugmentationConfig:
    """Additive noise and reverberation applied to training chunks."""

    noise_dir: str | None = None
    rir_dir: str | None = None
    snr_db: list[float] = field(default_factory=lambda: [10.0, 20.0])
    noise_prob: float = 1.0
    rir_prob: float = 0.0
    band_limit_prob: float = 0.0  # telephone band, 300-3400 Hz
    eq_tilt_prob: float = 0.0
    eq_tilt_db_per_octave: float = 3.0
    gain_db: list[float] | None = None
    codec_prob: float = 0.0  # low-pass at a codec bandwidth (100 Hz - cut-off)
    codec_cutoffs_hz: list[float] = field(default_factory=lambda: [3400.0, 4000.0, 5500.0, 7000.0])


@dataclass
class DataConfig:
    """Training corpus and P x K chunk batches ."""

    corpus: str | list[str] = ""  # one corpus folder, or several read and pooled
    format: str = "auto"
    strict: bool = False  # a bad audio file in the corpus is an error (default: reported once and left out)
    split: str | None = None  # keep only this split's speakers, from the corpus' splits.json (built-in corpus)
    num_speakers: int | None = None  # keep only this many speakers: a nested subset (data/corpus.nested_speakers)
    chunk_duration_s: float = 3.0
    speakers_per_batch: int = 128
    chunks_per_speaker: int = 1
    min_speaker_duration_s: float = 30.0
    num_workers: int = 2
    augmentation: AugmentationConfig | None = None
    # Speaker augmentation: every factor adds a speed-perturbed copy of every speaker as a new
    # class (e.g. [0.9, 1.1] triples the speakers; voxmetric/data/sampler.py ChunkBatches).
    speed_perturb: list[float] = field(default_factory=list)


@dataclass
class ModelConfig:
    name: str = "sinctdnn"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    name: str = "aam"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    """``sgd``, ``adam`` or ``adamw``; the seed uses a constant learning rate of 0.01.

    ``network_lr_scale`` (fine-tuning): the network's parameters learn at ``lr *
    network_lr_scale`` and the loss head's (e.g. the AAM class weights of your speakers)
    at ``lr``, both following the schedule: a fresh head needs a high rate, a pretrained
    network a low one that refines it without forgetting (see ``configs/finetune/``).
    """

    name: str = "sgd"
    lr: float = 0.01
    network_lr_scale: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 0.0


@dataclass
class ScheduleConfig:
    """Learning-rate schedule over training batches: ``constant`` (the seed), ``step`` or ``cosine``.

    ``warmup_batches`` ramps the rate linearly from 0 first, whatever the schedule.
    """

    name: str = "constant"
    warmup_batches: int = 0
    step_batches: int = 1000
    gamma: float = 0.5
    min_lr: float = 0.0


@dataclass
class TrainingConfig:
    """An epoch is a fixed number of batches, as in the seed.

    ``max_time_s`` counts training time only (forward, backward, optimiser steps and
    waiting for batches): validation and checkpoint writing are not counted, so a run
    with validation takes longer in wall-clock time. When it runs out the current epoch
    ends early, then validates and checkpoints.

    ``checkpoints/last.pt`` is written at the end of every epoch and, within an epoch,
    every ``checkpoint_every_batches`` batches or ``checkpoint_every_s`` seconds of
    wall-clock time, whichever comes first (``null`` turns either off); the checkpoint
    it replaces is kept as ``checkpoints/last.prev.pt``. ``--resume`` continues from any
    of them exactly (mid-epoch included).

    A batch whose loss or gradient is NaN or infinite is skipped (no weight update; counted
    as ``skipped_nonfinite`` in ``metrics.jsonl``); ``max_nonfinite_steps`` such batches in
    a row stop training with an error.

    ``freeze_network_batches`` (fine-tuning from ``init_from``): for the first N optimiser
    steps only the loss head learns; the network is frozen (no gradients, and eval mode so
    that its batch-norm running statistics keep their pretrained values). A freshly
    initialised head's large early gradients then never reach the pretrained network.
    After N steps the network learns at ``optimizer.lr * optimizer.network_lr_scale``, its
    warm-up (``schedule.warmup_batches``) restarted from there. N at or beyond the whole
    run trains the head alone (a linear probe). Fixed on ``--resume``.

    ``imprint_head_chunks`` (fine-tuning; margin-softmax losses): at the start of a run (not
    on ``--resume``) every class's weight in the loss head is set to the mean direction of
    the network's embeddings of N of its chunks, drawn and augmented as training chunks are
    (weight imprinting, :func:`~voxmetric.training.finetune.imprint_head`), instead of random
    weights; 0 (default) leaves the head random.
    """

    epochs: int = 10
    batches_per_epoch: int = 500
    grad_clip_norm: float | None = 5.0
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    device: str = "auto"
    early_stop_epochs: int | None = None
    max_time_s: float | None = None  # training time only (validation not counted): see above
    log_every_batches: int = 10
    checkpoint_every_batches: int | None = 100
    checkpoint_every_s: float | None = 600.0
    max_nonfinite_steps: int = 20
    freeze_network_batches: int = 0  # loss head only for the first N optimiser steps: see above
    imprint_head_chunks: int = 0  # loss head starts at each class's mean embedding of N chunks: see above


@dataclass
class FrontendConfig:
    """How every recording becomes one embedding (:mod:`voxmetric.inference.frontend`): in
    validation, in ``compare``'s test, and (stored in each checkpoint) in ``embed``,
    ``verify`` and ``calibrate`` of a checkpoint: one setting, one number everywhere."""

    vad: bool = True
    window_s: float | None = DEFAULT_WINDOW_S  # null: the whole file at once
    step_s: float = DEFAULT_STEP_S
    rms_dbfs: float | None = None


@dataclass
class WindowCandidate:
    """One extraction setting validation may choose at the end of training: ``window_s``
    seconds every ``step_s`` (``window_s: null``: the whole file at once)."""

    window_s: float | None = None
    step_s: float = DEFAULT_STEP_S


def _default_candidates() -> list[WindowCandidate]:
    return [WindowCandidate(None), WindowCandidate(2.0, 1.0), WindowCandidate(3.0, 1.5)]


@dataclass
class ValidationConfig:
    """Validation EER after each epoch on a trial list (paths relative to ``root``).

    ``at_start``: also validate the starting model before the first batch, logged as epoch 0
    in ``metrics.jsonl`` and saved as ``checkpoints/best.pt``, so a fine-tune that never
    beats its starting model ends with that model as ``best.pt`` (and says so) instead of a
    worse one. ``null`` (the default) means true when ``init_from`` is set. Not repeated on
    ``--resume``.

    With ``select_frontend`` (the default) and validation trials, the end of training measures
    the best checkpoint's validation EER with the ``frontend:`` section's window and step and
    with each of ``frontend_candidates``, and stores the lowest (ties: the fewest windows per
    minute of audio) in ``best.pt`` and ``last.pt``, where ``embed``, ``verify``, ``calibrate``
    and ``export`` of them read it (:mod:`voxmetric.training.frontend_select`). Per-epoch
    validation always uses the ``frontend:`` section, so epochs stay comparable.
    """

    trials: str | None = None
    root: str | None = None
    at_start: bool | None = None
    select_frontend: bool = True
    frontend_candidates: list[WindowCandidate] = field(default_factory=_default_candidates)


@dataclass
class EvaluationConfig:
    """The test trials ``compare`` measures each trained model on, with adaptive s-norm."""

    trials: str | None = None
    root: str | None = None
    snorm_top_n: int = DEFAULT_TOP_N
    cohort_utterances_per_speaker: int = 3
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP


@dataclass
class DistillConfig:
    """Learning from a trained teacher as well as from the labels.

    ``teacher``: a model (bundled name, weights file or checkpoint, any architecture; null:
    no distillation). It embeds every training batch (the same augmented chunks, in eval
    mode, no gradient) and ``weight`` times the relational distillation loss
    (:mod:`voxmetric.losses.distill`: the student's cosine scores between the batch's chunks
    against the teacher's) is added to the training loss. The teacher is not saved in
    checkpoints; ``--resume`` needs the same teacher and weight.

    ``kind``: ``relational`` (the mean squared difference of all the batch's cosine scores) or
    ``softmax`` (the KL divergence between the teacher's and the student's softmax over each
    chunk's scores at ``temperature``: each chunk's nearest neighbours count most) or
    ``embedding`` (1 - the cosine between each chunk's student embedding and its teacher
    embedding, zero-padded: the student's embedding must be at least as large as the teacher's).

    ``label_loss``: false trains on the teacher's scores alone (no ``loss:`` term; the labels
    still shape the speakers x chunks batches, and the loss head is built but never trained).
    """

    teacher: str | None = None
    weight: float = 1.0
    kind: str = "relational"
    temperature: float = 0.1
    label_loss: bool = True


@dataclass
class Config:
    """A whole experiment."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    init_from: str | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


MOVED_KEYS = {f"{section}.{key}": f"frontend.{key}"
              for section in ("validation", "evaluation") for key in ("window_s", "step_s")}
"""Keys of older configs and where they live now."""


def _check_values(config: Config) -> None:
    """Impossible values, rejected before any work."""
    positive = {
        "data.chunk_duration_s": config.data.chunk_duration_s,
        "data.speakers_per_batch": config.data.speakers_per_batch,
        "data.chunks_per_speaker": config.data.chunks_per_speaker,
        "optimizer.lr": config.optimizer.lr,
        "training.epochs": config.training.epochs,
        "training.batches_per_epoch": config.training.batches_per_epoch,
        "training.log_every_batches": config.training.log_every_batches,
        "training.max_nonfinite_steps": config.training.max_nonfinite_steps,
        "schedule.step_batches": config.schedule.step_batches,
        "evaluation.cohort_utterances_per_speaker": config.evaluation.cohort_utterances_per_speaker,
        "frontend.step_s": config.frontend.step_s,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value!r}")
    positive_or_null = {
        "training.checkpoint_every_batches": config.training.checkpoint_every_batches,
        "training.checkpoint_every_s": config.training.checkpoint_every_s,
    }
    for name, value in positive_or_null.items():
        if value is not None and not value > 0:
            raise ConfigError(f"{name} must be positive or null (off), got {value!r}")
    non_negative = {
        "data.num_workers": config.data.num_workers,
        "schedule.warmup_batches": config.schedule.warmup_batches,
        "training.freeze_network_batches": config.training.freeze_network_batches,
        "training.imprint_head_chunks": config.training.imprint_head_chunks,
        "schedule.min_lr": config.schedule.min_lr,
        "evaluation.n_bootstrap": config.evaluation.n_bootstrap,
        "seed": config.seed,
    }
    for name, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value!r}")
    if config.data.num_speakers is not None and config.data.num_speakers < 1:
        raise ConfigError(f"data.num_speakers must be positive or null (all), got {config.data.num_speakers}")
    if config.evaluation.snorm_top_n < 2:
        raise ConfigError(f"evaluation.snorm_top_n must be >= 2, got {config.evaluation.snorm_top_n}")
    allowed = {
        "optimizer.name": (config.optimizer.name, tuple(OPTIMIZERS)),
        "schedule.name": (config.schedule.name, tuple(SCHEDULES)),
        "data.format": (config.data.format, ("auto", "voxceleb", "kaldi", "folders")),
    }
    for name, (value, options) in allowed.items():
        if value not in options:
            raise ConfigError(f"{name} is '{value}'; allowed: {', '.join(options)}")
    augmentation = config.data.augmentation
    if augmentation is not None:
        low, high = (augmentation.snr_db + [None, None])[:2]
        if len(augmentation.snr_db) != 2 or low > high:
            raise ConfigError(f"data.augmentation.snr_db must be [low, high], got {augmentation.snr_db}")
        for name in ("noise_prob", "rir_prob", "band_limit_prob", "eq_tilt_prob"):
            if not 0.0 <= getattr(augmentation, name) <= 1.0:
                raise ConfigError(f"data.augmentation.{name} must be in [0, 1], got {getattr(augmentation, name)}")
    if not config.optimizer.network_lr_scale > 0:
        raise ConfigError(f"optimizer.network_lr_scale must be positive, got {config.optimizer.network_lr_scale!r} "
                          f"(to keep the network fixed, set training.freeze_network_batches to the run's length)")
    if config.validation.at_start and not config.validation.trials:
        raise ConfigError("validation.at_start is true but validation.trials is not set: give the trials to "
                          "validate the starting model on, or set validation.at_start=false")
    from ..data.sampler import check_speed_factors

    check_speed_factors(config.data.speed_perturb)
    if not config.distill.weight > 0:
        raise ConfigError(f"distill.weight must be positive, got {config.distill.weight!r} "
                          f"(to train without a teacher, set distill.teacher to null)")
    from ..losses.distill import DISTILLATIONS

    if config.distill.kind not in DISTILLATIONS:
        raise ConfigError(f"distill.kind must be one of {', '.join(DISTILLATIONS)}, got {config.distill.kind!r}")
    if not config.distill.temperature > 0:
        raise ConfigError(f"distill.temperature must be positive, got {config.distill.temperature!r}")
    if not config.distill.label_loss:
        if not config.distill.teacher:
            raise ConfigError("distill.label_loss is false but distill.teacher is not set: without a teacher "
                              "nothing would be learned")
        if config.training.freeze_network_batches or config.training.imprint_head_chunks:
            raise ConfigError("distill.label_loss is false, so the loss head is never trained: set "
                              "training.freeze_network_batches and training.imprint_head_chunks to 0")
    if config.frontend.window_s is not None and config.frontend.window_s <= 0:
        raise ConfigError(f"frontend.window_s must be positive or null (whole file), got {config.frontend.window_s}")
    for index, candidate in enumerate(config.validation.frontend_candidates):
        where = f"validation.frontend_candidates[{index}]"
        if candidate.window_s is not None and candidate.window_s <= 0:
            raise ConfigError(f"{where}.window_s must be positive or null (whole file), got {candidate.window_s}")
        if candidate.step_s <= 0:
            raise ConfigError(f"{where}.step_s must be positive, got {candidate.step_s}")
    if config.frontend.rms_dbfs is not None and config.frontend.rms_dbfs >= 0:
        raise ConfigError(f"frontend.rms_dbfs must be negative (dB re full scale) or null, got {config.frontend.rms_dbfs}")


def config_from_dict(data: dict[str, Any]) -> Config:
    """Validate plain data (as read from YAML) into a :class:`Config`."""
    config = build_strict(Config, copy.deepcopy(data), "", MOVED_KEYS)
    _check_values(config)
    return config


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML) to plain data."""
    data = copy.deepcopy(data)
    for override in overrides:
        if "=" not in override:
            raise OverrideError(f"--set {override}: not of the form key.path=value (e.g. training.epochs=3)")
        dotted, raw = override.split("=", 1)
        node = data
        keys = dotted.strip().split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise OverrideError(f"--set {override}: '{key}' is not a section")
        try:
            node[keys[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise OverrideError(f"--set {override}: invalid YAML value ({_yaml_problem(error)})") from None
    return data


def _names_key(message: str, dotted: str) -> bool:
    """Whether a schema error message is about the config key ``dotted`` (or a key under it)."""
    return re.search(rf"(?<![\w.]){re.escape(dotted)}(?![\w])", message) is not None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: the problem and what was being parsed."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    return f"{problem} ({context})" if context else problem


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file.

    Raises:
        ConfigError: missing, a folder, not UTF-8 text, or invalid YAML (one line: file, line,
            column and problem).
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text YAML config (a binary file?)") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror or error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {_yaml_problem(error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML config, apply overrides, validate; relative paths are made absolute.

    Paths in the config (corpus, trials, roots, noise folders, ``init_from``
    when it is a file) are relative to the config file's folder.
    """
    data = apply_overrides(read_yaml(path), list(overrides))
    try:
        config = config_from_dict(data)
    except ConfigError as error:
        # A bad value or key that came from --set is named as such, not as the file's.
        text = str(error)
        culprit = next((o for o in reversed(list(overrides)) if _names_key(text, o.split("=", 1)[0].strip())), None)
        raise ConfigError(f"--set {culprit}: {text}" if culprit else f"{path}: {text}") from None
    return resolve_paths(config, Path(path).resolve().parent)


def resolve_paths(config: Config, base: Path) -> Config:
    """Make the config's relative paths absolute against ``base``."""

    def absolute(value: str | None) -> str | None:
        if not value:
            return value
        candidate = Path(value).expanduser()
        return str(candidate if candidate.is_absolute() else (base / candidate).resolve())

    if isinstance(config.data.corpus, list):
        config.data.corpus = [absolute(path) for path in config.data.corpus]
    else:
        config.data.corpus = absolute(config.data.corpus)
    if config.data.augmentation is not None:
        config.data.augmentation.noise_dir = absolute(config.data.augmentation.noise_dir)
        config.data.augmentation.rir_dir = absolute(config.data.augmentation.rir_dir)
    for section in (config.validation, config.evaluation):
        section.trials = absolute(section.trials)
        section.root = absolute(section.root)
    if config.init_from and (base / config.init_from).exists():
        config.init_from = absolute(config.init_from)
    if config.distill.teacher and (base / config.distill.teacher).exists():
        config.distill.teacher = absolute(config.distill.teacher)
    return config


def save_config(config: Config, path: str | Path) -> None:
    """Write the merged config (every field, defaults included) as YAML, atomically."""
    with atomic_open(path) as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)


def default_exp_dir(config_path: str) -> str:
    """Experiment folder of a config when none is given: ``exp/<config file stem>``."""
    return str(Path("exp") / Path(config_path).stem)
