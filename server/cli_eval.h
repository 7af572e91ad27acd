#ifndef CLAA_SERVER_CLI_EVAL_H_
#define CLAA_SERVER_CLI_EVAL_H_

// claa-cli's pruning-analysis commands (flags in cli_eval.cc):
//   claa-cli oracle --model DIR (--prompt TEXT | --prompt_file F) [--max_tokens N] [--top N]
//   claa-cli eval --model DIR --tasks FILE.jsonl --out PREFIX [--methods ...] [--keep_ratios ...]

namespace claa {

int RunOracleCommand();
int RunEvalCommand();

}  // namespace claa

#endif  // CLAA_SERVER_CLI_EVAL_H_
