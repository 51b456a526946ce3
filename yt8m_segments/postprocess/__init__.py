"""From probabilities to a submission: the fp16 probability cache,
refinement with video-level predictions and its held-out choice, ensembles,
the LightGBM stacker, and the submission CSV."""
