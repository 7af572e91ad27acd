#include "server/security/bearer_auth.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace claa::security {

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_token_file ", path, ": cannot be read"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(text.str()));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--auth_token_file ", path, ": is empty"));
  }
  // The token travels in an HTTP/2 header value: no control characters or inner whitespace.
  for (unsigned char c : token) {
    if (c <= 0x20 || c >= 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--auth_token_file ", path,
          ": the token must be one word of printable ASCII (no spaces or control characters)"));
    }
  }
  return token;
}

bool ConstantTimeEquals(absl::string_view given, absl::string_view expected) {
  // Always walks all of `expected`; a length mismatch is folded into the result, not returned
  // early. volatile keeps the compiler from turning the loop into an early-exit memcmp.
  volatile unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff = diff | (g ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

absl::Status CheckBearerToken(std::optional<absl::string_view> method_path,
                              const std::vector<absl::string_view>& authorization,
                              absl::string_view token) {
  if (method_path && absl::StartsWith(*method_path, kHealthServicePrefix)) {
    return absl::OkStatus();
  }
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "missing credentials: this server requires the metadata 'authorization: Bearer <token>'");
  }
  if (authorization.size() > 1) {
    return absl::UnauthenticatedError("more than one 'authorization' metadata entry");
  }
  absl::string_view value = authorization.front();
  // RFC 6750: the scheme is case-insensitive, then one or more spaces.
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        "the 'authorization' metadata must be 'Bearer <token>'");
  }
  absl::string_view given = absl::StripLeadingAsciiWhitespace(value.substr(kScheme.size()));
  if (!ConstantTimeEquals(given, token)) {
    return absl::UnauthenticatedError("invalid bearer token");
  }
  return absl::OkStatus();
}

grpc::Status BearerTokenProcessor::Process(const InputMetadata& auth_metadata,
                                           grpc::AuthContext* /*context*/,
                                           OutputMetadata* consumed_auth_metadata,
                                           OutputMetadata* /*response_metadata*/) {
  std::optional<absl::string_view> path;
  std::vector<absl::string_view> authorization;
  for (const auto& [key, value] : auth_metadata) {
    const absl::string_view k(key.data(), key.size());
    const absl::string_view v(value.data(), value.size());
    if (k == ":path") path = v;
    if (k == "authorization") authorization.push_back(v);
  }
  absl::Status status = CheckBearerToken(path, authorization, token_);
  if (!status.ok()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(status.message()));
  }
  if (authorization.size() == 1) {
    consumed_auth_metadata->emplace("authorization", std::string(authorization.front()));
  }
  return grpc::Status::OK;
}

}  // namespace claa::security
