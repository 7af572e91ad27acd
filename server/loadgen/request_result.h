#ifndef CLAA_SERVER_LOADGEN_REQUEST_RESULT_H_
#define CLAA_SERVER_LOADGEN_REQUEST_RESULT_H_

// What the client measured for one benchmark request.
#include <string>
#include <vector>

namespace claa::loadgen {

struct RequestResult {
  // True when the stream ended with `complete` and an OK status.
  bool success = false;
  // For failures: the gRPC code name ("DEADLINE_EXCEEDED", ...), or "NO_COMPLETE" when an OK
  // stream ended without its final `complete` message.
  std::string error;
  std::string error_message;
  std::string request_id;     // as the server reported it
  std::string finish_reason;  // "STOP", "LENGTH", "EOS", "ABORT"
  // Seconds from the benchmark start to the moment the call was started (after waiting for
  // its arrival time and a concurrency slot); the latencies below are measured from it.
  double start_s = 0;
  double ttft_s = 0;          // to the first chunk carrying tokens
  double e2el_s = 0;          // to the end of the stream
  std::vector<double> itl_s;  // gaps between consecutive token-bearing chunks
  int prompt_tokens = 0;      // usage.prompt_tokens from the server
  int output_tokens = 0;      // usage.completion_tokens (tokens streamed if absent)
};

// (e2el - ttft) / (output_tokens - 1), vLLM's time per output token excluding the first;
// 0 when fewer than two tokens were generated.
inline double Tpot(const RequestResult& r) {
  return r.output_tokens > 1 ? (r.e2el_s - r.ttft_s) / (r.output_tokens - 1) : 0.0;
}

}  // namespace claa::loadgen

#endif  // CLAA_SERVER_LOADGEN_REQUEST_RESULT_H_
