"""Inference: model files (:mod:`.weights`, :mod:`.checkpoint`), loading a network from any
of them (:mod:`.loading`), the one front-end (:mod:`.frontend`), :class:`SpeakerModel`
(:mod:`.speaker_model`), export (:mod:`.export`) and the bundled models (``bundled/``)."""
