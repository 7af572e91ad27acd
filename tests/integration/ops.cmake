# Operating claa-server: the Prometheus/Grafana files under deploy/ and the Docker image under
# docker/. Included from tests/integration/CMakeLists.txt. Exit code 77 marks a test skipped
# (a tool it needs is absent; docker/install-deps.sh installs the Prometheus ones).

# A real Prometheus (/usr/bin/prometheus) scrapes a real claa-server under load.
add_test(NAME prometheus_integration
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/prometheus_test.py
    --server $<TARGET_FILE:claa-server>
    --source_dir ${CMAKE_SOURCE_DIR}
    --work_dir ${CMAKE_CURRENT_BINARY_DIR}/prometheus)
set_tests_properties(prometheus_integration PROPERTIES TIMEOUT ${claa_timeout_120} SKIP_RETURN_CODE 77)

# promtool check config / check rules / test rules on deploy/prometheus.
add_test(NAME deploy_promtool
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/deploy_config_test.py --part promtool
    --source_dir ${CMAKE_SOURCE_DIR})
set_tests_properties(deploy_promtool PROPERTIES TIMEOUT ${claa_timeout_60} SKIP_RETURN_CODE 77)

# The dashboard, alert rules and Dockerfile against server/metrics.cc, the README and the
# server's real flags.
add_test(NAME deploy_static
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/deploy_config_test.py --part static
    --source_dir ${CMAKE_SOURCE_DIR} --server $<TARGET_FILE:claa-server>)
set_tests_properties(deploy_static PROPERTIES TIMEOUT ${claa_timeout_60})

# Builds docker/Dockerfile with podman and runs the image's binaries and health check. A full
# image build compiles the whole project inside the container (tens of minutes on CI's two
# cores), so it runs only when CLAA_DOCKER_TEST=1; otherwise it reports itself skipped.
add_test(NAME docker_image
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/docker_image_test.sh ${CMAKE_SOURCE_DIR}
    ${CMAKE_CURRENT_BINARY_DIR}/docker_image)
set_tests_properties(docker_image PROPERTIES TIMEOUT ${claa_timeout_5400} SKIP_RETURN_CODE 77)
