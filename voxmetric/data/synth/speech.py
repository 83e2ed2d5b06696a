"""Source-filter speech synthesis for the built-in corpus (see :mod:`voxmetric.data.synth`).

One utterance is made in three steps (the first two here), all vectorised with numpy:

1. **Content** (:func:`plan_segments`): words from a seeded lexicon, each a
   string of phones (vowels with formant targets, approximants, nasals,
   fricatives, stops as closure + burst + aspiration), with pauses.
2. **Voice** (:func:`render_speech`): a Rosenberg-like glottal pulse train
   (open quotient, asymmetry, jitter, shimmer, pitch contour), aspiration
   noise for breathiness, a spectral-tilt low-pass, then a time-varying
   cascade of formant resonators (F1-F5 plus a nasal pole-zero pair) applied
   frame by frame in the STFT domain (512-sample Hann frames, hop 128,
   weighted overlap-add), plus shaped frication noise. Formant and amplitude
   tracks are piecewise-constant targets smoothed over ~50 ms, which gives
   coarticulation and formant transitions.
3. **Channel**: see :mod:`voxmetric.data.synth_channel`.

Speakers differ in vocal-tract length (all formants scaled), per-vowel formant
habits, F4/F5, bandwidths, F0 mean and range, glottal pulse shape and tilt,
breathiness, jitter, shimmer, nasality, a piriform-sinus notch at 4-5 kHz,
fricative place and strength, speaking rate, and a long-term spectral
colouring (``timbre_db``, 9 dB standard deviation at 10 knots) standing in for
everything else that makes voices' long-term spectra differ (:func:`draw_voice`).
Utterances of one speaker differ in words, pitch (mood), rate and effort.

The strengths were tuned so that a mean-MFCC baseline lands near 25 % EER
once the channel is added (see :mod:`voxmetric.data.synth`): mean MFCCs are
dominated by content (e.g. how many fricatives an utterance holds), which is
why fricatives are rarer than stops and sonorants in the lexicon and
unstressed vowels are reduced toward schwa, as in natural speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import rfftfreq

from ...audio.io import SAMPLE_RATE_HZ

N_FFT = 512
HOP = N_FFT // 4  # Hann analysis + synthesis windows overlap-add to a constant at N/4
FRAME_S = HOP / SAMPLE_RATE_HZ
_WINDOW = np.hanning(N_FFT + 1)[:-1]
_OLA_GAIN = 1.5  # sum of squared periodic Hann windows at hop N/4
_Z1 = np.exp(-2j * np.pi * rfftfreq(N_FFT, 1 / SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ)
_BINS_HZ = rfftfreq(N_FFT, 1 / SAMPLE_RATE_HZ)


@dataclass(frozen=True)
class Phone:
    """A phone's targets for a reference adult male (formants scale per speaker).

    ``formants_hz`` of ``None`` takes the next phone's (an /h/ or a stop's
    aspiration is the following vowel, whispered).
    """

    name: str
    kind: str  # vowel, approximant, nasal, fricative, stop
    formants_hz: tuple[float, float, float] | None
    duration_ms: tuple[float, float]
    voicing: float = 1.0
    frication: float = 0.0
    aspiration: float = 0.0
    noise_hz: tuple[float, float] = (4000.0, 4000.0)  # frication / burst centre, bandwidth
    nasal_zero_hz: float = 0.0


def _vowel(name, f1, f2, f3):
    return Phone(name, "vowel", (f1, f2, f3), (70, 170))


# Peterson & Barney (1952) / Hillenbrand et al. (1995) adult male averages.
VOWELS = [
    _vowel("i", 270, 2290, 3010), _vowel("I", 390, 1990, 2550), _vowel("e", 476, 2089, 2691),
    _vowel("E", 530, 1840, 2480), _vowel("ae", 660, 1720, 2410), _vowel("a", 730, 1090, 2440),
    _vowel("O", 570, 840, 2410), _vowel("o", 497, 910, 2459), _vowel("U", 440, 1020, 2240),
    _vowel("u", 300, 870, 2240), _vowel("V", 640, 1190, 2390), _vowel("3", 490, 1350, 1690),
]
CONSONANTS = {
    p.name: p
    for p in [
        Phone("l", "approximant", (360, 1300, 2700), (45, 80), voicing=0.5),
        Phone("r", "approximant", (350, 1100, 1500), (45, 80), voicing=0.5),
        Phone("w", "approximant", (300, 700, 2200), (40, 70), voicing=0.5),
        Phone("j", "approximant", (280, 2200, 2900), (40, 70), voicing=0.5),
        Phone("m", "nasal", (280, 1000, 2200), (50, 90), voicing=0.25, nasal_zero_hz=1000),
        Phone("n", "nasal", (280, 1600, 2600), (45, 85), voicing=0.25, nasal_zero_hz=1700),
        Phone("N", "nasal", (280, 2000, 2600), (50, 90), voicing=0.25, nasal_zero_hz=3000),
        Phone("s", "fricative", (350, 1700, 2700), (80, 140), 0.0, 0.175, 0.0, (5500, 2500)),
        Phone("S", "fricative", (350, 1900, 2400), (80, 140), 0.0, 0.175, 0.0, (3000, 1500)),
        Phone("f", "fricative", (350, 1000, 2300), (70, 120), 0.0, 0.06, 0.0, (6000, 8000)),
        Phone("T", "fricative", (350, 1500, 2600), (70, 120), 0.0, 0.05, 0.0, (6500, 6000)),
        Phone("z", "fricative", (350, 1700, 2700), (60, 110), 0.45, 0.15, 0.0, (5500, 2500)),
        Phone("v", "fricative", (350, 1000, 2300), (50, 90), 0.45, 0.04, 0.0, (6000, 8000)),
        Phone("h", "fricative", None, (50, 90), 0.0, 0.0, 0.3),
        Phone("p", "stop", (350, 900, 2200), (50, 90), 0.0, 0.25, 0.45, (1200, 2500)),
        Phone("t", "stop", (350, 1800, 2700), (45, 80), 0.0, 0.3, 0.45, (4500, 3000)),
        Phone("k", "stop", (350, 2100, 2500), (50, 90), 0.0, 0.3, 0.45, (2200, 1200)),
        Phone("b", "stop", (350, 900, 2200), (45, 80), 0.12, 0.15, 0.0, (1200, 2500)),
        Phone("d", "stop", (350, 1800, 2700), (40, 75), 0.12, 0.175, 0.0, (4500, 3000)),
        Phone("g", "stop", (350, 2100, 2500), (45, 80), 0.12, 0.175, 0.0, (2200, 1200)),
    ]
}
# Sonorants and stops twice as likely as fricatives, roughly as in English text.
_ONSETS = list("ptkbdgmnlrwj") * 2 + list("fsSTvzh") + ["st", "pr", "tr", "kr", "bl", "pl", "gr", "br", "dr"]
_CODAS = list("nmNtkdlrp") * 2 + list("szfT")
SCHWA_HZ = np.array([500.0, 1500.0, 2500.0])
TIMBRE_KNOTS_HZ = np.geomspace(100.0, 7800.0, 10)
_SILENCE = Phone("_", "silence", None, (0, 0), voicing=0.0)


# ---------------------------------------------------------------- speakers


@dataclass(frozen=True)
class Voice:
    """What makes one synthetic speaker sound like themselves (all fixed per speaker)."""

    sex: str  # "f" or "m"
    f0_hz: float  # mean fundamental frequency
    f0_range_st: float  # size of pitch accents, semitones
    vtl_factor: float  # vocal-tract length relative to the reference male; formants / vtl_factor
    vowel_shift: np.ndarray  # (n_vowels, 3) multiplicative per-vowel F1-F3 habits
    f4_hz: float  # before vocal-tract scaling
    f5_hz: float
    bandwidth_scale: float  # formant bandwidths relative to the reference
    open_quotient: float  # open fraction of the glottal cycle
    pulse_skew: float  # rising fraction of the open phase
    tilt_hz: float  # corner of the extra first-order source low-pass (spectral tilt)
    breathiness: float  # aspiration noise mixed into voicing
    jitter: float  # relative period perturbation (std)
    shimmer: float  # per-period amplitude perturbation (std of log gain)
    speaking_rate: float  # relative to the phone durations above
    nasality: float  # velum opening on vowels, 0..1
    sinus_zero_hz: float  # hypopharyngeal (piriform sinus) anti-resonance, before scaling
    fricative_shift: float  # multiplies fricative and burst noise frequencies
    fricative_gain: float  # multiplies frication amplitude
    timbre_db: np.ndarray  # (len(TIMBRE_KNOTS_HZ),) long-term spectral colouring of the voice

    def scalars(self) -> dict[str, float | str]:
        """The per-speaker numbers (for ``speakers.tsv``)."""
        return {k: v for k, v in vars(self).items() if not isinstance(v, np.ndarray)}


def draw_voice(rng: np.random.Generator) -> Voice:
    """A random speaker; male and female voices equally likely."""
    female = rng.random() < 0.5
    f0_low, f0_high = (160.0, 255.0) if female else (85.0, 155.0)
    vtl = rng.normal(0.86, 0.04) if female else rng.normal(1.0, 0.05)
    f4 = rng.uniform(3300, 3900)
    return Voice(
        sex="f" if female else "m",
        f0_hz=float(np.exp(rng.uniform(np.log(f0_low), np.log(f0_high)))),
        f0_range_st=float(rng.uniform(1.5, 5.0)),
        vtl_factor=float(np.clip(vtl, 0.78, 1.2)),
        vowel_shift=np.exp(rng.normal(0.0, 0.05, size=(len(VOWELS), 3))),
        f4_hz=float(f4),
        f5_hz=float(f4 + rng.uniform(600, 1200)),
        bandwidth_scale=float(np.exp(rng.normal(0.0, 0.2))),
        open_quotient=float(rng.uniform(0.4, 0.75)),
        pulse_skew=float(rng.uniform(0.55, 0.8)),
        tilt_hz=float(np.exp(rng.uniform(np.log(2500), np.log(10000)))),
        breathiness=float(0.12 * rng.random() ** 2),
        jitter=float(rng.uniform(0.003, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.12)),
        speaking_rate=float(rng.uniform(0.8, 1.25)),
        nasality=float(rng.uniform(0.0, 0.5)),
        sinus_zero_hz=float(rng.uniform(4000, 5500)),
        fricative_shift=float(np.exp(rng.normal(0.0, 0.12))),
        fricative_gain=float(10.0 ** (rng.normal(0.0, 4.0) / 20.0)),
        timbre_db=rng.normal(0.0, 9.0, size=len(TIMBRE_KNOTS_HZ)),
    )


# ---------------------------------------------------------------- content


def make_lexicon(rng: np.random.Generator, n_words: int = 300) -> list[list[list[str]]]:
    """Random words: each a list of syllables, each a list of phone names."""
    vowels = [v.name for v in VOWELS]
    words = []
    for _ in range(n_words):
        syllables = []
        for _ in range(rng.choice([1, 1, 2, 2, 2, 3])):
            onset = list(rng.choice(_ONSETS)) if rng.random() < 0.85 else []
            coda = [str(rng.choice(_CODAS))] if rng.random() < 0.5 else []
            syllables.append(onset + [str(rng.choice(vowels))] + coda)
        words.append(syllables)
    return words


@dataclass(frozen=True)
class Segment:
    """A stretch of one phone (or part of a stop) over frames ``[start, stop)``."""

    phone: Phone
    start: int
    stop: int
    part: str = ""  # stops: "closure", "burst" or "aspiration"
    gain: float = 1.0  # stress
    vowel_index: int = -1


def _phone(name: str) -> tuple[Phone, int]:
    for i, v in enumerate(VOWELS):
        if v.name == name:
            return v, i
    return CONSONANTS[name], -1


def _word_segments(word, rng, rate, frame) -> list[Segment]:
    """Segments of one word starting at ``frame``; one stressed syllable."""
    stressed = rng.integers(len(word))
    segments = []
    for s, syllable in enumerate(word):
        gain = 1.0 if s == stressed else 0.6
        for name in syllable:
            phone, vowel_index = _phone(name)
            low, high = phone.duration_ms
            length = max(2, round(rng.uniform(low, high) * (1.3 if s == stressed else 1.0) / rate / 1000 / FRAME_S))
            if phone.kind == "stop":
                burst = 2
                aspiration = round(rng.uniform(30, 60) / 1000 / FRAME_S) if phone.aspiration else 0
                parts = [("closure", length), ("burst", burst), ("aspiration", aspiration)]
            else:
                parts = [("", length)]
            for part, n in parts:
                if n:
                    segments.append(Segment(phone, frame, frame + n, part, gain, vowel_index))
                    frame += n
    return segments


def plan_segments(lexicon, rng: np.random.Generator, rate: float, n_frames: int) -> list[Segment]:
    """Words and pauses filling ``n_frames`` frames, silence at both ends."""
    frame = round(rng.uniform(0.05, 0.3) / FRAME_S)
    end = n_frames - round(rng.uniform(0.05, 0.2) / FRAME_S)
    segments = [Segment(_SILENCE, 0, frame)]
    misses = 0
    while misses < 4:  # a word that does not fit: try a few shorter ones before stopping
        word = _word_segments(lexicon[rng.integers(len(lexicon))], rng, rate, frame)
        if word[-1].stop > end:
            misses += 1
            continue
        segments += word
        frame = word[-1].stop
        if rng.random() < 0.2:  # a pause between words; otherwise connected speech
            pause = round(rng.uniform(0.08, 0.3) / FRAME_S)
            segments.append(Segment(_SILENCE, frame, min(frame + pause, end)))
            frame = segments[-1].stop
    segments.append(Segment(_SILENCE, frame, n_frames))
    return segments


# ---------------------------------------------------------------- tracks


def _smooth(track: np.ndarray, frames: int) -> np.ndarray:
    """Hann-weighted moving average along axis 0 (edges held)."""
    kernel = np.hanning(frames + 2)[1:-1]
    kernel /= kernel.sum()
    pad = frames // 2
    padded = np.pad(track, [(pad, frames - 1 - pad)] + [(0, 0)] * (track.ndim - 1), mode="edge")
    if track.ndim == 1:
        return np.convolve(padded, kernel, mode="valid")
    return np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(track.shape[1])], axis=1)


def _formant_targets(segments, voice: Voice) -> list[np.ndarray | None]:
    scale = 1.0 / voice.vtl_factor
    targets = []
    for seg in segments:
        f = seg.phone.formants_hz
        if f is None:
            targets.append(None)
            continue
        f = np.asarray(f, dtype=np.float64)
        if seg.vowel_index >= 0 and seg.gain < 1.0:  # unstressed vowels drift toward schwa
            f = f + 0.6 * (SCHWA_HZ - f)
        f = f * scale
        if seg.vowel_index >= 0:
            f = f * voice.vowel_shift[seg.vowel_index]
        targets.append(f)
    # Silence, /h/ and aspiration take the next (else previous) phone's shape.
    following = next((t for t in reversed(targets) if t is not None), np.array([500, 1500, 2500]) * scale)
    for i in range(len(targets) - 1, -1, -1):
        if targets[i] is None:
            targets[i] = following
        following = targets[i]
    return targets


def _segment_amplitudes(seg: Segment) -> tuple[float, float, float]:
    """(voicing, aspiration, frication) of a segment."""
    p = seg.phone
    if p.kind != "stop":
        return p.voicing * seg.gain, p.aspiration * seg.gain, p.frication * seg.gain
    if seg.part == "closure":
        return p.voicing * seg.gain, 0.0, 0.0
    if seg.part == "burst":
        return p.voicing * seg.gain, 0.0, p.frication * seg.gain
    return 0.0, p.aspiration * seg.gain, 0.0


def build_tracks(segments, voice: Voice, n_frames: int) -> dict[str, np.ndarray]:
    """Frame-rate control tracks, each ``(n_frames,)`` (formants ``(n_frames, 3)``)."""
    formants = np.zeros((n_frames, 3))
    amps = np.zeros((n_frames, 3))  # voicing, aspiration, frication
    noise = np.zeros((n_frames, 2))
    nasal = np.zeros((n_frames, 2))  # coupling, zero frequency
    scale = 1.0 / voice.vtl_factor
    for seg, target in zip(segments, _formant_targets(segments, voice)):
        span = slice(seg.start, seg.stop)
        formants[span] = target
        amps[span] = _segment_amplitudes(seg)
        noise[span] = seg.phone.noise_hz
        if seg.phone.kind == "nasal":
            nasal[span] = (1.0, seg.phone.nasal_zero_hz * scale)
        elif seg.phone.kind == "vowel":
            nasal[span] = (voice.nasality, 550.0 * scale)
        else:
            nasal[span] = (0.0, 550.0 * scale)
    return {
        "formants_hz": _smooth(formants, 7),  # ~50 ms: coarticulation
        "voicing": _smooth(amps[:, 0], 3),
        "aspiration": _smooth(amps[:, 1], 3),
        "frication": voice.fricative_gain * (amps[:, 2] + 0.5 * _smooth(amps[:, 2], 3)),  # sharp bursts
        "noise_hz": noise * [np.sqrt(scale) * voice.fricative_shift, 1.0],
        "nasal": _smooth(nasal, 5),
    }


def f0_track(segments, voice: Voice, rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """``(n_frames,)`` F0 in Hz: declination, a pitch accent per word, slow drift."""
    t = np.arange(n_frames) / n_frames
    semitones = rng.normal(0.0, 1.0) + rng.uniform(1.0, 3.0) * (0.5 - t)  # mood + declination
    for seg in segments:
        if seg.phone.kind == "vowel" and seg.gain == 1.0 and rng.random() < 0.7:
            centre, width = (seg.start + seg.stop) / 2, max(seg.stop - seg.start, 4)
            bump = np.exp(-0.5 * ((np.arange(n_frames) - centre) / width) ** 2)
            semitones = semitones + voice.f0_range_st * rng.uniform(0.3, 1.0) * bump
    drift = _smooth(rng.normal(0.0, 2.0, n_frames), 25)
    return voice.f0_hz * 2.0 ** ((semitones + drift) / 12.0)
