"""From a trained run to probabilities: batched prediction over videos and
segments, the probability caches inference builds (resumable parts,
shards), the TF Serving export, and the same caches on Apache Beam."""
