#ifndef CLAA_SERVER_SECURITY_BEARER_AUTH_H_
#define CLAA_SERVER_SECURITY_BEARER_AUTH_H_

// Optional bearer-token authentication of the public API (--auth_token_file): every call must
// carry the metadata `authorization: Bearer <token>`, else it ends with UNAUTHENTICATED before
// any service sees it. It runs as a gRPC AuthMetadataProcessor on the listening port's
// credentials, so the services know nothing of it. Health checks (grpc.health.v1.Health) stay
// open, so that load balancers and orchestrators can probe the server without the secret.
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/auth_metadata_processor.h"

namespace claa::security {

// Method paths with this prefix need no token.
inline constexpr absl::string_view kHealthServicePrefix = "/grpc.health.v1.Health/";

// The token stored in `path`, surrounding whitespace (a trailing newline) trimmed.
// InvalidArgument naming the file when it cannot be read or holds no token.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// a == b, in a time that depends only on the length of `expected`, never on where the strings
// first differ (so response times do not reveal the token byte by byte).
bool ConstantTimeEquals(absl::string_view given, absl::string_view expected);

// The decision for one call: `method_path` is its ":path" (nullopt if absent: then the token is
// required), `authorization` the values of its "authorization" metadata. OK or Unauthenticated
// with a message that says what is missing or wrong (never the expected token).
absl::Status CheckBearerToken(std::optional<absl::string_view> method_path,
                              const std::vector<absl::string_view>& authorization,
                              absl::string_view token);

// CheckBearerToken as an AuthMetadataProcessor. A matching "authorization" entry is consumed,
// so no service (or log) ever sees the token. It ignores the AuthContext (may be null).
class BearerTokenProcessor final : public grpc::AuthMetadataProcessor {
 public:
  explicit BearerTokenProcessor(std::string token) : token_(std::move(token)) {}

  // A string compare: cheap enough to run inline on gRPC's transport thread.
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  const std::string token_;
};

}  // namespace claa::security

#endif  // CLAA_SERVER_SECURITY_BEARER_AUTH_H_
