"""Running jobs: DDP under Hydra, SLURM through submitit, Optuna sweeps."""
