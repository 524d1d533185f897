"""Training: the shared trainer and what it owns (checkpoints, batch sampling, precision,
LoRA)."""
