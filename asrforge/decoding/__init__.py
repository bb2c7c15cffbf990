"""Searches over model outputs. Each search has one frozen options dataclass; those that work on arrays of
log-probabilities alone (CTC, the word n-gram, the transducer's search over any network) live in
``asrforge_runtime.search``, which this package runs over PyTorch models."""
