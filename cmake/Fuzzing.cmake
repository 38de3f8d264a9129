# libFuzzer harnesses (fuzz/, docs/fuzzing.md). A tree configured with
# -DSECONDREAD_FUZZ=ON and clang instruments all of the project's code with
# AddressSanitizer, UBSan and libFuzzer's coverage counters; scripts/fuzz
# configures such a tree in build-fuzz/ and builds only the `fuzzers` target.
option(SECONDREAD_FUZZ "Instrument for libFuzzer (clang only) and define the fuzz harnesses" OFF)
if(SECONDREAD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "SECONDREAD_FUZZ needs clang (scripts/fuzz uses clang++-14)")
  endif()
  # UBSan findings abort, so libFuzzer stops on them and keeps the input.
  add_compile_options(-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
