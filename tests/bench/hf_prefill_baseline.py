#!/usr/bin/env python3
"""HF transformers prefill baseline for tests/bench/gpu_prefill_bench.cc (issue 4).

What a user would run instead of our engine: LlamaForCausalLM of the Llama-3.1-8B shape built
from a config (random bf16 weights initialised on the GPU, nothing downloaded), torch SDPA
attention, batch 1. TTFT = one forward over the whole prompt with a KV cache (use_cache=True, as
generate() does) and logits for the last position only (logits_to_keep=1, as generate() does),
timed with CUDA events: median of --runs after --warmups. Also times torch's SDPA kernel alone
(causal, 32 query / 8 KV heads, d 128) for comparison with our attention kernel.

Writes JSON: {"ttft_ms": {len: ms}, "sdpa_tflops": {len: TFLOP/s}, "versions": {...}}.
"""
import argparse
import json
import statistics
import sys
import time

import torch


def llama31_8b_config(layers):
    from transformers import LlamaConfig

    common = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                  num_hidden_layers=layers, num_attention_heads=32, num_key_value_heads=8,
                  head_dim=128, max_position_embeddings=131072, rms_norm_eps=1e-5,
                  tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    try:  # transformers >= 5: rope_parameters carries rope_theta
        cfg = LlamaConfig(**common, rope_parameters=dict(rope, rope_theta=500000.0))
    except TypeError:
        cfg = LlamaConfig(**common, rope_theta=500000.0, rope_scaling=rope)
    cfg._attn_implementation = "sdpa"
    return cfg


def time_ms(fn, warmups, runs):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for r in range(warmups + runs):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        if r >= warmups:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def sdpa_tflops(s, warmups, runs):
    q = torch.randn(1, 32, s, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 8, s, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, 8, s, 128, device="cuda", dtype=torch.bfloat16)
    f = torch.nn.functional.scaled_dot_product_attention
    ms = time_ms(lambda: f(q, k, v, is_causal=True, enable_gqa=True), warmups, runs)
    return 4.0 * s * s * 128 * 32 / 2 / (ms * 1e-3) / 1e12


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="4096,8192,16384,32768")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmups", type=int, default=2)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]

    import transformers
    from transformers import LlamaForCausalLM

    out = {"ttft_ms": {}, "sdpa_tflops": {},
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "device": torch.cuda.get_device_name(0),
                        "attn_implementation": "sdpa", "logits_to_keep": 1,
                        "use_cache": True}}
    for s in lengths:
        out["sdpa_tflops"][str(s)] = sdpa_tflops(s, args.warmups, args.runs)
        print(f"torch SDPA s={s}: {out['sdpa_tflops'][str(s)]:.1f} TFLOP/s", flush=True)

    t0 = time.time()
    torch.manual_seed(0)
    cfg = llama31_8b_config(args.layers)
    torch.set_default_dtype(torch.bfloat16)  # build in bf16 directly (no fp32 copy of 8B)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    model.eval()
    print(f"HF model built on the GPU in {time.time() - t0:.1f} s "
          f"(attn {model.config._attn_implementation})", flush=True)

    for s in lengths:
        ids = torch.randint(1, 128000, (1, s), device="cuda")

        def prefill():
            with torch.inference_mode():
                model(input_ids=ids, use_cache=True, logits_to_keep=1)

        ms = time_ms(prefill, args.warmups, args.runs)
        out["ttft_ms"][str(s)] = ms
        print(f"HF prefill s={s}: {ms:.1f} ms", flush=True)
        torch.cuda.empty_cache()

    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
