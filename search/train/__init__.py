"""Training one configuration: `TrainConfig`, optimisers and schedules, the
training loop `train()`, checkpoints, and the `hpsearch train` command."""
