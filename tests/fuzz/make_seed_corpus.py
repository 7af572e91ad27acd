#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/ (committed; rerun to regenerate).

Seeds are small, hand-made and deterministic: one well-formed example of each input family a
target understands plus a few near-misses, so the fuzzer starts from every parser branch
instead of rediscovering JSON or the protobuf wire format. Nothing here is copied from a model
or a third-party file.
"""
import json
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# --- safetensors -------------------------------------------------------------------------------

def safetensors(tensors, metadata=None, header_override=None, tail=b""):
    """tensors: list of (name, dtype, shape, raw bytes); offsets follow in order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = header_override if header_override is not None else json.dumps(header)
    text = text.encode()
    return struct.pack("<Q", len(text)) + text + data + tail


def f32(*xs):
    return struct.pack("<%df" % len(xs), *xs)


def u16(*xs):
    return struct.pack("<%dH" % len(xs), *xs)


def safetensors_seeds():
    t = "safetensors"
    write(t, "mixed", safetensors([
        ("model.embed_tokens.weight", "F32", [2, 3], f32(1, -2, 3.5, 0, 1e-30, -0.0)),
        ("model.norm.weight", "F16", [4], u16(0x3C00, 0x0001, 0x7C00, 0xFE00)),
        ("lm_head.weight", "BF16", [2, 2], u16(0x3F80, 0xBF80, 0x7FC0, 0x0000)),
    ], metadata={"format": "pt"}))
    write(t, "empty-header", safetensors([]))
    write(t, "zero-dim", safetensors([("a", "F32", [0, 5], b""), ("b", "BF16", [3, 0], b"")]))
    write(t, "scalar", safetensors([("s", "F32", [], f32(7))]))
    write(t, "1d-f16", safetensors([("v", "F16", [5], u16(1, 2, 3, 0x8400, 0x03FF))]))
    write(t, "3d", safetensors([("w", "F32", [2, 1, 2], f32(1, 2, 3, 4))]))
    write(t, "truncated", safetensors([("w", "F32", [4], f32(1, 2, 3, 4))])[:-5])
    write(t, "overlap", safetensors([], header_override=json.dumps({
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}), tail=f32(0, 1, 2)))
    write(t, "bad-dtype", safetensors([("w", "I8", [2], b"\x01\x02")]))
    write(t, "header-too-long", struct.pack("<Q", 1 << 40) + b"{}")


# --- config.json -------------------------------------------------------------------------------

def config_seeds():
    t = "model_config"
    llama = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512,
        "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 8,
        "max_position_embeddings": 512, "rms_norm_eps": 1e-05, "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True,
        "bos_token_id": 1, "eos_token_id": 2,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    }
    write(t, "llama-v5", json.dumps(llama, indent=1))
    llama3 = dict(llama)
    del llama3["rope_parameters"]
    llama3.update({"rope_theta": 500000.0, "eos_token_id": [128001, 128008, 128009],
                   "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192}})
    del llama3["head_dim"]
    write(t, "llama3-scaling", json.dumps(llama3))
    write(t, "mistral", json.dumps({
        "architectures": ["MistralForCausalLM"], "vocab_size": 32000, "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "max_position_embeddings": 32768, "rope_theta": 1e6,
        "rope_scaling": {"type": "linear", "factor": 2.0}, "sliding_window": None}))
    write(t, "qwen2", json.dumps({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936,
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
        "use_sliding_window": False, "tie_word_embeddings": True, "eos_token_id": 151643,
        "bos_token_id": None}))
    write(t, "model-type-only", json.dumps({
        "model_type": "llama", "vocab_size": 10, "hidden_size": 4, "intermediate_size": 4,
        "num_hidden_layers": 1, "num_attention_heads": 1, "max_position_embeddings": 4}))
    write(t, "bad-heads", json.dumps({
        "model_type": "llama", "vocab_size": 10, "hidden_size": 6, "intermediate_size": 4,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 3,
        "max_position_embeddings": 4}))
    write(t, "not-object", "[1, 2, 3]")


# --- tokenizer.json ----------------------------------------------------------------------------

def bytes_to_unicode():
    """GPT-2's byte -> printable character table (the algorithm, not a copy of any file)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + \
        list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def byte_level_tokenizer():
    table = bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    merges = []
    for pair in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"),
                 ("o", "n"), ("Ġ", "w"), ("in", "g")]:
        merged = pair[0] + pair[1]
        if merged not in vocab:
            vocab[merged] = len(vocab)
        merges.append(" ".join(pair))
    added = [{"id": len(vocab), "content": "<|endoftext|>", "single_word": False,
              "lstrip": False, "rstrip": False, "normalized": False, "special": True},
             {"id": len(vocab) + 1, "content": "<|user|>", "single_word": False,
              "lstrip": True, "rstrip": True, "normalized": False, "special": True}]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": True}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>",
                                                                "ids": [len(vocab)],
                                                                "tokens": ["<|endoftext|>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def sentencepiece_tokenizer():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for piece in ["▁", "▁t", "he", "▁the", "▁a", "▁is", "e", "t", "h", "a", "i", "s", "▁ca",
                  "t", "c"]:
        vocab.setdefault(piece, len(vocab))
    return {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": c, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for c, i in [("<unk>", 0), ("<s>", 1), ("</s>", 2)]],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [], "special_tokens": {
                               "<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                  "vocab": vocab,
                  "merges": [["▁", "t"], ["h", "e"], ["▁t", "he"], ["▁", "a"], ["c", "a"]]},
    }


def metaspace_tokenizer():
    vocab = {"[UNK]": 0, "▁": 1, "a": 2, "b": 3, "ab": 4, "▁ab": 5, "1": 6, ".": 7}
    return {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFKC"}, {"type": "Lowercase"}, {"type": "StripAccents"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "WhitespaceSplit"}, {"type": "Punctuation", "behavior": "isolated"},
            {"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "isolated",
             "invert": False},
            {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
             "split": True}]},
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                    "split": True},
        "post_processor": {"type": "BertProcessing", "sep": ["[UNK]", 0], "cls": ["[UNK]", 0]},
        "added_tokens": [{"id": 8, "content": "[MASK]", "single_word": True, "lstrip": True,
                          "rstrip": False, "normalized": True, "special": False}],
        "model": {"type": "BPE", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "end_of_word_suffix": "</w>", "vocab": vocab, "merges": ["a b", "▁ ab"]},
    }


def tokenizer_json_seeds():
    t = "tokenizer_json"
    write(t, "byte-level", json.dumps(byte_level_tokenizer(), ensure_ascii=False))
    write(t, "sentencepiece", json.dumps(sentencepiece_tokenizer(), ensure_ascii=False))
    write(t, "metaspace-normalizers", json.dumps(metaspace_tokenizer(), ensure_ascii=False))
    minimal = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}
    write(t, "minimal", json.dumps(minimal))
    bert = {"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}]},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "decoder": {"type": "BPEDecoder", "suffix": "</w>"},
            "post_processor": {"type": "RobertaProcessing", "sep": ["b", 1], "cls": ["a", 0],
                               "trim_offsets": True, "add_prefix_space": False},
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "a</w>": 2},
                      "merges": [], "dropout": None}}
    write(t, "bert-roberta", json.dumps(bert))
    write(t, "not-bpe", json.dumps({"model": {"type": "WordPiece", "vocab": {"a": 0}}}))


# --- text --------------------------------------------------------------------------------------

TEXTS = {
    "english": "Once upon a time, there was a little girl named Lily. She loved to play.",
    "whitespace": "  leading and trailing  \n\n\ttabs\r\n   ",
    "unicode": "naïve café — 日本語のテキスト, 中文, 한국어, Привет, مرحبا",
    "emoji": "😀🎉👍🏽 👨‍👩‍👧 ❤️",
    "digits": "3.14159 2024-01-01 1,000,000 0x1F",
    "code": "def f(x):\n    return x ** 2  # comment\n\nprint(f(3))\n",
    "special-builtin": "<|begin_of_text|>hi<|end_of_text|> <|end_of_text|",
    "special-smollm2": "<|im_start|>user\nHi<|im_end|>\n<|endoftext|><repo_name>",
    "nul": "a\x00b\x00",
    "combining": "e\u0301 A\u030a \u1100\u1161\u11a8 \ufeffBOM",
}
INVALID = {
    "invalid-utf8": b"bad \xff\xfe utf8",
    "truncated-utf8": b"ok \xe6\x97",
    "surrogate": b"\xed\xa0\x80 lone surrogate",
    "overlong": b"\xc0\xaf\xe0\x80\xaf",
}


def text_seeds():
    for target in ("tokenize_builtin", "tokenize_smollm2"):
        for name, text in TEXTS.items():
            write(target, name, text)
        for name, data in INVALID.items():
            write(target, name, data)


# --- claa.v1.GenerateRequest (protobuf wire format, encoded by hand) ---------------------------

def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    return varint((num << 3) | wire) + payload


def f_varint(num, n):
    return field(num, 0, varint(n))


def f_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return field(num, 2, varint(len(b)) + b)


def f_float(num, x):
    return field(num, 5, struct.pack("<f", x))


def packed(num, ids):
    return f_bytes(num, b"".join(varint(i) for i in ids))


def sampling(temperature=None, top_p=None, top_k=None, seed=None, max_tokens=None, stop=(),
             stop_ids=(), ignore_eos=False):
    out = b""
    if temperature is not None:
        out += f_float(1, temperature)
    if top_p is not None:
        out += f_float(2, top_p)
    if top_k is not None:
        out += f_varint(3, top_k)
    if seed is not None:
        out += f_varint(4, seed)
    if max_tokens is not None:
        out += f_varint(5, max_tokens)
    for s in stop:
        out += f_bytes(6, s)
    if stop_ids:
        out += packed(7, stop_ids)
    if ignore_eos:
        out += f_varint(8, 1)
    return out


def pruning(method=None, keep_ratio=None, pruning_layer=None, window=None, aggregation=None,
            min_layer=None, pooling=None):
    out = b""
    for num, v in [(1, method), (3, pruning_layer), (4, window), (5, aggregation),
                   (6, min_layer), (7, pooling)]:
        if v is not None:
            out += f_varint(num, v)
    if keep_ratio is not None:
        out += f_float(2, keep_ratio)
    return out


def request(request_id=None, text=None, ids=None, samp=None, prune=None, add_special=None,
            skip_special=None):
    out = b""
    if request_id is not None:
        out += f_bytes(1, request_id)
    if text is not None:
        out += f_bytes(2, text)
    if ids is not None:
        out += f_bytes(3, packed(1, ids))
    if samp is not None:
        out += f_bytes(4, samp)
    if prune is not None:
        out += f_bytes(5, prune)
    if add_special is not None:
        out += f_varint(6, int(add_special))
    if skip_special is not None:
        out += f_varint(7, int(skip_special))
    return out


def request_seeds():
    t = "generate_request"
    write(t, "text", request(text="Once upon a time"))
    write(t, "greedy-stop", request(request_id="r-1", text="Hello there, the cat",
                                    samp=sampling(temperature=0, max_tokens=40,
                                                  stop=["the", "\n", "e"], stop_ids=[32])))
    write(t, "ids-sampled", request(ids=[510, 1, 2, 3, 255, 300],
                                    samp=sampling(temperature=0.7, top_p=0.9, top_k=40, seed=7,
                                                  max_tokens=30, ignore_eos=True),
                                    skip_special=False))
    write(t, "claa", request(text="a b c d e f g h i j k l m n o p q r s t u v w x y z",
                             prune=pruning(method=2, keep_ratio=0.2, pruning_layer=2, window=4,
                                           aggregation=2, min_layer=1, pooling=3)))
    write(t, "gemfilter", request(ids=list(range(40)), prune=pruning(method=4, keep_ratio=0.5)))
    write(t, "fastkv-defaults", request(text="x", prune=pruning(method=3),
                                        add_special=False))
    write(t, "bad-pruning", request(text="x", prune=pruning(method=2, pruning_layer=9, pooling=4)))
    write(t, "bad-ids", request(ids=[99999, -1 & 0xFFFFFFFF]))
    write(t, "max-tokens-huge", request(text="hi", samp=sampling(max_tokens=4000)))
    write(t, "nan-temperature", request(text="hi", samp=sampling(temperature=float("nan"),
                                                                 top_p=0.0)))
    write(t, "empty", b"")
    write(t, "unknown-field", request(text="hi") + f_varint(99, 5) + f_bytes(100, "??"))


def main():
    safetensors_seeds()
    config_seeds()
    tokenizer_json_seeds()
    text_seeds()
    request_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
