# libFuzzer builds (tests/fuzz), included from the top-level CMakeLists.txt before any library is
# defined: a fuzzer only steers by coverage of the code it exercises, so every library must be
# compiled with the coverage hooks (-fsanitize=fuzzer-no-link), and with ASan/UBSan so that a
# memory error or undefined behaviour is a crash the fuzzer saves. Needs clang (Debian `clang`,
# whose libclang-rt-14-dev provides libFuzzer): CC=clang CXX=clang++ cmake -DCLAA_FUZZ=ON ...
# or `cmake --preset fuzz`. Off by default; the committed corpus and saved crashes replay in the
# normal gtest suite (tests/unit/fuzz) without clang.
option(CLAA_FUZZ "Build the libFuzzer targets under tests/fuzz (clang only)" OFF)
if(CLAA_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "CLAA_FUZZ=ON needs clang (CXX=clang++), not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
