"""sft: fine-tune a causal language model (LoRA or full) on datakit's output shards.

The modules, in the order a newcomer should read them:

- `config`     every setting, its default, YAML + `--key value` overrides
- `templates`  conversations -> text pieces, only assistant turns trained (model's own, BayLing, Llama-3)
- `data`       shards -> tokens (cached) -> packed rows -> batches with restarting positions
- `attention`  how a packed batch keeps examples apart (varlen kernels, a FlexAttention BlockMask, or a mask)
- `model`      model + LoRA, the summed-token-loss module, DDP / FSDP wrapping
- `train`      the loop: `python -m sft.train --config cfg.yaml`
- `checkpoint`, `metrics`, `eval`: what the loop calls
"""

__version__ = "0.1.0"
