# claa-loadgen and the Python client (server/python): integration tests against a real
# claa-server. Included from tests/integration/CMakeLists.txt.
add_executable(loadgen_integration_test loadgen_test.cc)
target_link_libraries(loadgen_integration_test PRIVATE claa_test_support
  nlohmann_json::nlohmann_json)
target_compile_definitions(loadgen_integration_test PRIVATE
  CLAA_SERVER_BINARY="$<TARGET_FILE:claa-server>"
  CLAA_LOADGEN_BINARY="$<TARGET_FILE:claa-loadgen>")
add_dependencies(loadgen_integration_test claa-server claa-loadgen)
gtest_discover_tests(loadgen_integration_test PROPERTIES TIMEOUT ${claa_timeout_120})

# server/python/claa_client.py's CLI: generate, abort, health, info.
add_test(NAME python_cli_integration
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/python_cli_test.py
    --server $<TARGET_FILE:claa-server>
    --client ${CMAKE_SOURCE_DIR}/server/python/claa_client.py
    --cache_dir ${CMAKE_CURRENT_BINARY_DIR}/python_cli)
set_tests_properties(python_cli_integration PROPERTIES TIMEOUT ${claa_timeout_120})
