#ifndef CLAA_TESTS_UNIT_SECURITY_TEST_CERTS_H_
#define CLAA_TESTS_UNIT_SECURITY_TEST_CERTS_H_

// A throwaway PKI made at test time with the openssl CLI, so that no private key is ever
// committed. In `dir` (each NAME as NAME.pem + NAME.key, EC P-256, valid two days):
//   ca            the trusted CA
//   server        signed by ca; SAN IP:127.0.0.1, DNS:localhost; serverAuth + clientAuth (so it
//                 also serves as a worker's and router's internal certificate)
//   client        signed by ca; clientAuth
//   worker        signed by ca; SAN DNS:claa-worker only (needs a server-name override)
//   rogue_ca      an unrelated CA
//   rogue_client  signed by rogue_ca; clientAuth
// Used by tests/unit/security and tests/integration/security_test.cc.
#include <cstdlib>
#include <filesystem>
#include <string>

namespace claa::testing {

inline constexpr char kOpenssl[] = "/usr/bin/openssl";

// "" on success, else what went wrong.
inline std::string MakeTestCerts(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(kOpenssl, ec)) return std::string(kOpenssl) + " not found";
  const std::string script = R"(set -e
cd "$1"
O=/usr/bin/openssl
EC="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
ca() { $O req -x509 $EC -keyout $1.key -out $1.pem -days 2 -subj "/CN=$1"; }
leaf() {
  $O req $EC -keyout $1.key -out $1.csr -subj "/CN=$1"
  printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\nextendedKeyUsage=%s\n' "$3" "$4" > $1.ext
  $O x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -days 2 -extfile $1.ext \
    -out $1.pem
}
ca ca
ca rogue_ca
leaf server ca "IP:127.0.0.1,DNS:localhost" "serverAuth,clientAuth"
leaf client ca "DNS:claa-client" "clientAuth"
leaf worker ca "DNS:claa-worker" "serverAuth,clientAuth"
leaf rogue_client rogue_ca "DNS:claa-client" "clientAuth"
)";
  const std::filesystem::path script_path = dir / "make_certs.sh";
  {
    FILE* f = std::fopen(script_path.c_str(), "w");
    if (f == nullptr) return "cannot write " + script_path.string();
    std::fputs(script.c_str(), f);
    std::fclose(f);
  }
  const std::string log = (dir / "make_certs.log").string();
  const std::string cmd =
      "/bin/bash '" + script_path.string() + "' '" + dir.string() + "' > '" + log + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) return "openssl failed; see " + log;
  return "";
}

}  // namespace claa::testing

#endif  // CLAA_TESTS_UNIT_SECURITY_TEST_CERTS_H_
