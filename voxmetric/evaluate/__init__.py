"""voxmetric.evaluate: from a model and a trial list to metrics and figures.

* :mod:`.extract`: whole-file embeddings (sliding windows, averaged);
* :mod:`.embeddings`: embedding files (``.npz`` / ``.safetensors``) and id lookup;
* :mod:`.scoring`: cosine scores and adaptive s-norm over a trial list;
* :mod:`.metrics`: DET curve, EER with bootstrap interval, normalised minDCF;
* :mod:`.plots`, :mod:`.report`: DET / histogram figures, JSON + Markdown results.

Submodules are imported on use, so ``import voxmetric`` stays light.
"""
