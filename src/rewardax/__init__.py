"""rewardax: RL agents rewarded by vision-language models, end to end in JAX.

Layers (dependencies point one way): ``envs`` (MJX physics, tasks, cameras) and ``rewards`` (frames to
scalars) stand on ``render`` (a JAX ray caster) and ``models`` (Flax NNX vision-language models).

Importing rewardax has no side effects: nothing in JAX is patched, no MuJoCo model compiled, no distributed
runtime joined. Each happens when it is needed: the CPU Cholesky workaround (`rewardax.cpu_cholesky`) when an
MJX env is made, a humanoid model when a humanoid env or task test needs one, the multi-process join when
training starts (`rewardax.train.train`, `rewardax.distributed.initialize`).
"""

__version__ = "0.1.0"
