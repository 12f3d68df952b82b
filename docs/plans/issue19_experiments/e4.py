"""E4: the InternVL3-8B-shaped forward (bf16 weights) compiled on CPU from abstract arrays: memory_analysis
without allocating (peak RSS of this process printed)."""
import os, resource, time
os.environ["JAX_PLATFORMS"] = "cpu"
import jax, jax.numpy as jnp
from flax import nnx
from rewardax.models.internvl import InternVL, InternVLSpec
from rewardax.models.layers import vectorised_attention, count_params

t0 = time.time()
vision = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
              image_size=[448, 448], patch_size=[14, 14], attention_bias=True, use_qk_norm=False,
              norm_type="layer_norm", layer_norm_eps=1e-6, use_mean_pooling=True, layer_scale_init_value=0.1,
              hidden_act="gelu")
text = dict(model_type="qwen2", hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
            intermediate_size=18944, vocab_size=151674, rms_norm_eps=1e-6, max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6}, hidden_act="silu")
spec = InternVLSpec.from_hf_config(dict(model_type="internvl", vision_config=vision, text_config=text,
                                        image_token_id=151667, image_seq_length=256, downsample_ratio=0.5,
                                        projector_hidden_act="gelu", tie_word_embeddings=False))
abstract = nnx.eval_shape(lambda: InternVL(spec, dtype_mm=jnp.bfloat16, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
graphdef, params = nnx.split(abstract)
nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
print(f"params {count_params(abstract) / 1e9:.3f} B, {nbytes / 2**30:.2f} GiB bf16; built in {time.time() - t0:.1f}s")
frames, T = 2, 271
pixels = jax.ShapeDtypeStruct((frames, 3, 448, 448), jnp.float32)
ids = jax.ShapeDtypeStruct((frames, T), jnp.int32)

def logits(params, pixels, ids):
    return nnx.merge(graphdef, params).last_token_logits(pixels, ids)

with vectorised_attention():
    lowered = jax.jit(logits).lower(params, pixels, ids)
    t1 = time.time()
    compiled = lowered.compile()
m = compiled.memory_analysis()
print(f"compile {time.time() - t1:.1f}s: arg {m.argument_size_in_bytes / 2**30:.2f} GiB, out "
      f"{m.output_size_in_bytes / 2**20:.2f} MiB, temp {m.temp_size_in_bytes / 2**30:.3f} GiB; "
      f"flops {compiled.cost_analysis().get('flops', float('nan')) / 1e12:.2f} TFLOP (loop bodies once); "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB; total {time.time() - t0:.1f}s")
