"""Training and evaluation support: everything that needs datasets rather than a single photo.

- ``metrics``: SPEC §4 metrics — IoU / BDE (FCDB, FLMS) and SRCC / PCC / Acc_{K/N} / Acc5 / Acc10 (GAICD).
- ``datasets``: readers for the FCDB training split (human crops and pairwise votes, all converted to file
  pixels) and the GAICD v1 annotations, plus the deterministic FCDB train/validation split.
- ``evaluate``: benchmark loops that take the model as a callable (``crop_fn`` / ``score_fn``) and a
  markdown table formatter.
- ``baselines``: whole-image, centred-crop and smartcrop baselines; ``python -m s2ccrop.training.baselines``
  measures them on the FCDB validation split.
- ``train``: the training loop and ``s2ccrop train``; its recipe is ``config.TrainConfig``, what a step sees of
  a photo ``samples``, the per-epoch measure ``validation``, the gene-head-only stage ``head_stage``.

The data itself lives in ``../shared`` (found via ``s2ccrop._shared.shared_dir``) and is never copied here.
"""
