"""The training engine: device and ranks, optimisation, checkpoints, logging, the loops."""
