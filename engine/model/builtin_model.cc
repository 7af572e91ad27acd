#include "engine/model/builtin_model.h"

namespace claa {

ModelConfig BuiltinModelConfig(int vocab_size, int bos_token_id, int eos_token_id) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = vocab_size;
  c.hidden_size = 256;
  c.intermediate_size = 768;
  c.num_layers = 4;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 32;
  c.max_position_embeddings = 2048;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = true;
  c.bos_token_id = bos_token_id;
  c.eos_token_ids = {eos_token_id};
  return c;
}

}  // namespace claa
