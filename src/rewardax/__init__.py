"""rewardax: RL agents rewarded by vision-language models, end to end in JAX.

Layers (dependencies point one way): ``envs`` (MJX physics, tasks, cameras) and ``rewards`` (frames to
scalars) stand on ``render`` (a JAX ray caster) and ``models`` (Flax NNX vision-language models).

Importing rewardax works around a deadlock of jaxlib 0.10's batched Cholesky on CPU (`cpu_cholesky`).
"""

from rewardax import cpu_cholesky

cpu_cholesky.install()

__version__ = "0.1.0"
