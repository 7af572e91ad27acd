# Kubernetes manifests (deploy/k8s): every kustomize rendering (base and overlays) is validated
# against the Kubernetes API schemas (npm kubernetes-models, installed by `npm ci` from
# tests/k8s/package-lock.json into this build tree) and cross-checked against the real
# claa-server: its --help flags, ports and roles, then the rendered router/prefill/decode
# commands are started on loopback and claa-loadgen sends requests through them.
# Included from tests/integration/CMakeLists.txt. Exit code 77 (skipped): kubectl, node or npm
# is absent.
add_test(NAME k8s_manifests
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/k8s/run_test.sh ${CMAKE_SOURCE_DIR}
    ${CMAKE_CURRENT_BINARY_DIR}/k8s $<TARGET_FILE:claa-server> $<TARGET_FILE:claa-loadgen>)
# The first run downloads ~35 MB of npm packages; later runs reuse them (about 10 s).
set_tests_properties(k8s_manifests PROPERTIES TIMEOUT ${claa_timeout_300} SKIP_RETURN_CODE 77)
