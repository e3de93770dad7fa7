"""A real SLURM cluster on one machine (`make cluster`): slurmctld, munged, and one slurmd per
node in its own network namespace, joined by a bridge. Settings: conf/cluster.yaml.

It exists so that sweeps, multi-node DDP and preemption meet a real scheduler in the tests;
the namespaces share the filesystem, which plays the site's shared filesystem.
"""
