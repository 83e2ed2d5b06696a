"""Training: configs (:mod:`.config`), the trainer (:mod:`.trainer`), DDP helpers
(:mod:`.distributed`), loss comparisons (:mod:`.compare`) and the demo (:mod:`.demo`)."""
