"""Training as a library: the two-stage task (task.run(TrainConfig)), its
loop, losses, strategies, distillation, mean teacher, validation, SWA and
the run directory it leaves."""
