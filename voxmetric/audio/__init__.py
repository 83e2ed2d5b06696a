"""Audio: reading and writing (:mod:`.io`, the only soundfile user), signal processing
(:mod:`.dsp`), speech detection (:mod:`.vad`) and input quality (:mod:`.quality`).

``from voxmetric import audio; audio.read(path)`` reads any file as 16 kHz mono float32.
"""

from .io import AUDIO_EXTENSIONS, SAMPLE_RATE_HZ, AudioInfo, duration_s, info, read, resample, write

__all__ = ["AUDIO_EXTENSIONS", "SAMPLE_RATE_HZ", "AudioInfo", "duration_s", "info", "read", "resample", "write"]
