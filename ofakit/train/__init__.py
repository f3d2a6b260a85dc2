"""Training: how weights are shared (progressive shrinking, sandwich rule), data, checkpoints."""
