"""The built-in synthetic multi-speaker corpus (``voxmetric synth``), the demo data.

:func:`synthesize` writes a VoxCeleb-style corpus of source-filter speech
(:mod:`~voxmetric.data.synth_speech`) recorded through per-session channels
(:mod:`~voxmetric.data.synth_channel`)::

    OUT/wav/<speaker>/<session>/<utt>.wav   16 kHz 16-bit mono, 2-8 s each
    OUT/speakers.tsv      speaker, split, sessions and voice parameters
    OUT/splits.json       split -> speakers (train / val / test, disjoint)
    OUT/test_trials.txt   VoxCeleb trial list over the test speakers
    OUT/val_trials.txt    the same over the validation speakers
    OUT/README.md         what this is and how it was made
    OUT/synth.json        the parameters; written last, marks a complete corpus

Speaker ids are ``syn0001``..., sessions ``s01``... A session is one channel
(microphone, room, background) shared by its utterances, so trial lists hold
both same-session and cross-session target pairs. Each speaker, session and
utterance draws from its own random stream derived from ``(seed, kind,
speaker, [session | utterance])``: the output does not depend on the number of
worker processes, and the same parameters give byte-identical files.

How hard it is: the mean-MFCC + cosine baseline
(:func:`voxmetric.evaluate.baseline.mean_mfcc_embedding`) gets an EER of
22.3 % on the test trials of the default corpus (40 speakers x 12 utterances,
seed 0; 27.7 % on its validation trials) and 25.3 % / 26.1 % on test / val
at 200 x 20 (seed 0); same-speaker scores are higher on average. A learned
model should do much better. Generation runs at ~150x real time on two busy
cores (200 x 20, 5.6 h of audio: ~2 minutes); see ``benchmarks/synth.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ... import audio
from ...errors import ConfigError, CorpusError, WriteError
from ...fileio import atomic_open, check_writable_folder, progress_bar
from ..corpus import Utterance
from .channel import apply_channel, draw_channel
from ...audio.io import SAMPLE_RATE_HZ
from ...audio.vad import speech_segments
from .render import render_speech
from .speech import draw_voice, make_lexicon
from ..trials import make_trials, write_trials

SYNTH_VERSION = 2
"""Bumped whenever the generator's output changes: a corpus records it in synth.json.
2: utterances without detectable speech are drawn again."""

MAX_DRAWS = 5
"""Draws of one utterance at most, until the speech detector finds speech in it."""

MIN_DURATION_S, MAX_DURATION_S = 2.0, 8.0
MAX_TRIALS_PER_KIND = 2000
"""Target (and as many non-target) trials per list, at most."""

SPLITS = ("train", "val", "test")
TRIAL_SPLITS = ("test", "val")
META_FILES = ("speakers.tsv", "splits.json", "README.md")

# Independent random streams, one per purpose (the second seed word).
_SPLIT, _VOICE, _CHANNEL, _UTTERANCE, _LEXICON, _SESSIONS, _TRIALS = range(7)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize` made (or found already made)."""

    out_dir: str
    n_speakers: int
    n_utterances: int
    total_duration_s: float
    split_speakers: dict[str, int]  # split -> number of speakers
    trial_files: dict[str, str]  # split -> trial list path
    n_trials: dict[str, int]  # split -> trials in its list
    skipped: bool = False  # the corpus was complete already: nothing written

    def __str__(self) -> str:
        splits = ", ".join(f"{name} {self.split_speakers.get(name, 0)}" for name in SPLITS)
        state = "already complete, nothing written" if self.skipped else "written"
        lines = [
            f"Synthetic corpus in {self.out_dir} ({state})",
            f"  {self.n_speakers} speakers ({splits}), {self.n_utterances} utterances, "
            f"{self.total_duration_s / 3600:.2f} h of 16 kHz audio",
        ]
        for name, path in self.trial_files.items():
            lines.append(f"  {name} trials: {path} ({self.n_trials[name]} trials, half target)")
        return "\n".join(lines)


# ---------------------------------------------------------------- plan


@dataclass(frozen=True)
class _SpeakerPlan:
    index: int
    speaker_id: str
    split: str
    sessions: tuple[int, ...] = field(repr=False)  # session number of each utterance

    def relative_path(self, utterance: int) -> str:
        return f"{self.speaker_id}/s{self.sessions[utterance]:02d}/{utterance + 1:05d}.wav"


def split_sizes(n_speakers: int) -> dict[str, int]:
    """Speakers per split: test max(4, 20 %), val max(2, 10 %) of what is left, train the rest."""
    test = min(n_speakers, max(4, round(0.2 * n_speakers)))
    val = min(n_speakers - test, max(2, round(0.1 * n_speakers)))
    return {"train": n_speakers - test - val, "val": val, "test": test}


MIN_SPEAKERS_TO_TRAIN = next(n for n in range(4, 100) if split_sizes(n)["train"] > 0)
"""The fewest speakers whose corpus has a training split (7: 4 test, 2 validation, 1 train);
``voxmetric synth`` refuses fewer (smaller corpora are for tests that train on every speaker)."""


def _plan(n_speakers: int, n_utterances: int, seed: int) -> list[_SpeakerPlan]:
    width = max(4, len(str(n_speakers)))
    order = _rng(seed, _SPLIT).permutation(n_speakers)
    split_of = {}
    start = 0
    for name, size in split_sizes(n_speakers).items():
        split_of.update((int(i), name) for i in order[start : start + size])
        start += size
    plans = []
    for i in range(n_speakers):
        n_sessions = min(n_utterances, int(_rng(seed, _SESSIONS, i).integers(2, 5)))
        sessions = tuple(u % n_sessions + 1 for u in range(n_utterances))
        plans.append(_SpeakerPlan(i, f"syn{i + 1:0{width}d}", split_of[i], sessions))
    return plans


# ---------------------------------------------------------------- rendering


@lru_cache(maxsize=4)
def _lexicon(seed: int):
    return make_lexicon(_rng(seed, _LEXICON))


def render_utterance(seed: int, speaker: int, session: int, utterance: int) -> np.ndarray:
    """One utterance of the corpus made with ``seed``: ``(samples,)`` float32 at 16 kHz.

    A draw in which voxmetric's speech detector finds no speech at all (a quiet voice under a
    loud channel: 3 of 2,400 utterances at 300 speakers, seed 0) would be refused by every
    command that embeds it, so it is drawn again from the next stream of that utterance
    (up to :data:`MAX_DRAWS` draws; the last one is kept whatever it holds).
    """
    voice = draw_voice(_rng(seed, _VOICE, speaker))
    channel = draw_channel(_rng(seed, _CHANNEL, speaker, session))
    for draw in range(MAX_DRAWS):
        rng = _rng(seed, _UTTERANCE, speaker, utterance, *((draw,) if draw else ()))
        duration_s = rng.uniform(MIN_DURATION_S, MAX_DURATION_S)
        waveform = apply_channel(render_speech(_lexicon(seed), voice, rng, duration_s), channel, rng)
        if speech_segments(waveform, SAMPLE_RATE_HZ):
            break
    return waveform


def _render_speaker(wav_dir: str, seed: int, plan: _SpeakerPlan) -> list[tuple[str, float]]:
    """Write one speaker's missing files; ``(relative path, duration_s)`` of each."""
    done = []
    for u, session in enumerate(plan.sessions):
        relative = plan.relative_path(u)
        path = os.path.join(wav_dir, relative)
        if os.path.exists(path):  # audio.write is atomic: an existing file is whole
            done.append((relative, audio.duration_s(path)))
            continue
        waveform = render_utterance(seed, plan.index, session, u)
        audio.write(path, waveform, SAMPLE_RATE_HZ)
        done.append((relative, len(waveform) / SAMPLE_RATE_HZ))
    return done


def _render_all(wav_dir: str, seed: int, plans, workers: int, progress: bool) -> dict[str, float]:
    durations: dict[str, float] = {}
    total = sum(len(p.sessions) for p in plans)
    with progress_bar(total=total, enabled=progress, unit="utt", desc="synth") as bar:
        if workers == 1:
            results = (_render_speaker(wav_dir, seed, p) for p in plans)
            for done in results:
                durations.update(done)
                bar.update(len(done))
            return durations
        # spawn, not fork: the parent may hold torch / tqdm threads.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for done in pool.map(_render_speaker, [wav_dir] * len(plans), [seed] * len(plans), plans):
                durations.update(done)
                bar.update(len(done))
    return durations


# ---------------------------------------------------------------- metadata


def _write_trials(out: Path, plans, durations, seed: int) -> tuple[dict[str, str], dict[str, int]]:
    files, counts = {}, {}
    for k, split in enumerate(TRIAL_SPLITS):
        members = [p for p in plans if p.split == split]
        if len(members) < 2:  # no non-target pairs: no list
            continue
        utts = [
            Utterance(p.relative_path(u), str(out / "wav" / p.relative_path(u)), p.speaker_id,
                      durations[p.relative_path(u)])
            for p in members for u in range(len(p.sessions))
        ]
        per_speaker = len(members[0].sessions)
        n_target = len(members) * per_speaker * (per_speaker - 1) // 2
        n_nontarget = len(utts) * (len(utts) - 1) // 2 - n_target
        n = min(n_target, n_nontarget, MAX_TRIALS_PER_KIND)
        trial_seed = int(np.random.SeedSequence([seed, _TRIALS, k]).generate_state(1)[0])
        path = out / f"{split}_trials.txt"
        write_trials(path, make_trials(utts, n, n, trial_seed))
        files[split], counts[split] = str(path), 2 * n
    return files, counts


def _write_speakers(out: Path, plans, seed: int) -> None:
    rows = []
    for p in plans:
        voice = draw_voice(_rng(seed, _VOICE, p.index)).scalars()
        values = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in voice.values()]
        rows.append("\t".join([p.speaker_id, p.split, str(max(p.sessions))] + values))
    header = "\t".join(["speaker", "split", "sessions"] + list(voice))
    with atomic_open(out / "speakers.tsv") as f:
        f.write(header + "\n" + "\n".join(rows) + "\n")
    splits = {name: [p.speaker_id for p in plans if p.split == name] for name in SPLITS}
    with atomic_open(out / "splits.json") as f:
        json.dump(splits, f, indent=1)


_README = """# Synthetic speaker-verification corpus

Made by `voxmetric synth` (voxmetric {version}, generator version {synth_version}):
{speakers} speakers x {utterances} utterances, seed {seed}, {hours:.2f} h of audio.
Re-running with the same parameters gives byte-identical files.

Every voice is synthetic (source-filter speech: glottal pulses through formant
resonators, with noise sources for fricatives and stops). Speakers differ in
vocal-tract length, F0 mean and range, glottal pulse shape, spectral tilt,
breathiness, jitter, shimmer, nasality and speaking rate (see `speakers.tsv`);
utterances differ in their random words, duration (2-8 s) and recording
channel. A session (`s01`, ...) is one microphone, room and background shared
by its utterances; noise is added at 5-30 dB SNR.

- `wav/<speaker>/<session>/<utt>.wav`: 16 kHz, 16-bit, mono.
- `splits.json`: disjoint train / val / test speakers ({split_text}).
- `test_trials.txt`, `val_trials.txt`: `LABEL PATH1 PATH2`, label 1 same speaker,
  paths relative to `wav/`, half target, half non-target.
- `speakers.tsv`: each speaker's split, sessions and voice parameters.
- `synth.json`: the parameters (a complete corpus is not written twice).
"""


def _write_readme(out: Path, params: dict, plans, total_duration_s: float) -> None:
    from ..._version import __version__

    sizes = split_sizes(len(plans))
    text = _README.format(
        version=__version__, synth_version=params["version"], speakers=params["speakers"],
        utterances=params["utterances"], seed=params["seed"], hours=total_duration_s / 3600,
        split_text=", ".join(f"{k} {v}" for k, v in sizes.items()),
    )
    with atomic_open(out / "README.md") as f:
        f.write(text)


# ---------------------------------------------------------------- output directory


def _read_record(out: Path) -> dict | None:
    """The synth.json of ``out``, ``None`` for a new or empty directory."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    if not out.is_dir():
        raise CorpusError(f"{out}: exists and is not a directory")
    try:
        with open(out / "synth.json", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CorpusError(
            f"{out}: directory is not empty and holds no synth.json; choose a new or empty "
            f"directory for the synthetic corpus"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise CorpusError(f"{out / 'synth.json'}: unreadable ({error}); delete the directory") from None


def _write_record(out: Path, params: dict, summary: SynthSummary) -> None:
    """synth.json, written last: its ``complete`` marks a finished corpus."""
    record = {
        "params": params,
        "complete": True,
        "n_utterances": summary.n_utterances,
        "total_duration_s": summary.total_duration_s,
        "split_speakers": summary.split_speakers,
        "trial_files": {k: os.path.basename(v) for k, v in summary.trial_files.items()},
        "n_trials": summary.n_trials,
    }
    with atomic_open(out / "synth.json") as f:
        json.dump(record, f, indent=1)


def _summary_from_record(out: Path, record: dict) -> SynthSummary:
    return SynthSummary(
        str(out), record["params"]["speakers"], record["n_utterances"], record["total_duration_s"],
        record["split_speakers"], {k: str(out / v) for k, v in record["trial_files"].items()},
        record["n_trials"], skipped=True,
    )


def _is_complete(out: Path, record: dict, plans) -> bool:
    if not record.get("complete"):
        return False
    files = [out / name for name in META_FILES] + [out / name for name in record["trial_files"].values()]
    files += [out / "wav" / p.relative_path(u) for p in plans for u in range(len(p.sessions))]
    return all(f.exists() for f in files)


def _clear(out: Path) -> None:
    """Remove a previous synthetic corpus (only the files synthesize writes)."""
    shutil.rmtree(out / "wav", ignore_errors=True)
    for name in META_FILES + ("test_trials.txt", "val_trials.txt", "synth.json"):
        (out / name).unlink(missing_ok=True)


def _check_params(speakers, utterances, seed, workers) -> None:
    checks = [
        ("speakers", speakers, 4, "the test split needs 4 speakers"),
        ("utterances", utterances, 2, "target trials need 2 utterances per speaker"),
        ("seed", seed, 0, "seeds are non-negative"),
        ("workers", 1 if workers is None else workers, 1, "at least one process"),
    ]
    for name, value, minimum, reason in checks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ConfigError(f"synth: {name} = {value!r}: must be an integer >= {minimum} ({reason})")


# ---------------------------------------------------------------- entry point


def synthesize(
    out_dir: str | os.PathLike,
    speakers: int = 40,
    utterances: int = 12,
    seed: int = 0,
    *,
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> SynthSummary:
    """Write the synthetic corpus to ``out_dir`` (layout in the module docstring).

    A directory that already holds a complete corpus made with the same
    parameters is left as it is (returns at once, ``skipped=True``); one with
    the same parameters but interrupted is completed.

    Args:
        out_dir: new, empty, or an earlier synthetic corpus.
        speakers: number of speakers (>= 4), split train / val / test.
        utterances: utterances per speaker (>= 2).
        seed: everything follows from it; same parameters, same bytes.
        workers: processes rendering speakers in parallel (default
            ``os.cpu_count()``); does not change the output.
        progress: show a progress bar over utterances on stderr.
        overwrite: replace a synthetic corpus made with other parameters.

    Raises:
        ConfigError: a parameter out of range.
        CorpusError: ``out_dir`` holds a corpus with other parameters (and
            ``overwrite`` is false), or other files (never overwritten).
    """
    _check_params(speakers, utterances, seed, workers)
    out = Path(out_dir)
    params = {"version": SYNTH_VERSION, "speakers": int(speakers), "utterances": int(utterances),
              "seed": int(seed), "sample_rate_hz": SAMPLE_RATE_HZ}
    plans = _plan(params["speakers"], params["utterances"], params["seed"])
    record = _read_record(out)
    if record is not None and record.get("params") != params:
        if not overwrite:
            old = record.get("params") or {}
            diff = ", ".join(f"{k}={old.get(k)} (asked {v})" for k, v in params.items() if old.get(k) != v)
            raise CorpusError(
                f"{out}: holds a synthetic corpus made with other parameters: {diff}; "
                f"replace it with --overwrite or choose another directory"
            )
        _clear(out)
        record = None
    if record is not None and _is_complete(out, record, plans):
        return _summary_from_record(out, record)

    check_writable_folder(out)  # a file in the way, no permission: one line naming it
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(str(out), error.strerror or str(error)) from None
    with atomic_open(out / "synth.json") as f:  # claims the directory; complete=false until the end
        json.dump({"params": params, "complete": False}, f, indent=1)
    workers = min(workers or os.cpu_count() or 1, len(plans))
    durations = _render_all(str(out / "wav"), params["seed"], plans, workers, progress)
    trial_files, n_trials = _write_trials(out, plans, durations, params["seed"])
    total_duration_s = float(sum(durations.values()))
    _write_speakers(out, plans, params["seed"])
    _write_readme(out, params, plans, total_duration_s)
    summary = SynthSummary(str(out), len(plans), len(durations), total_duration_s,
                           split_sizes(len(plans)), trial_files, n_trials)
    _write_record(out, params, summary)
    return summary
