"""The model: network, input pipeline, training runtime, checkpoints, the fit loop, the loaded classifier."""
