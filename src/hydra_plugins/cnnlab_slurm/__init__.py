"""cnnlab's SLURM launcher (conf/hydra/launcher/slurm.yaml): Hydra finds it in `hydra_plugins`."""
