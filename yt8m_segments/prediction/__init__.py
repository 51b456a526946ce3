"""From a trained run to probabilities: batched prediction over videos and
segments."""
