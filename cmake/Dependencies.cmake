# Every third-party dependency is looked up here, from Debian 12 packages.
find_package(Threads REQUIRED)
find_package(absl REQUIRED)
find_package(DCMTK REQUIRED CONFIG)
find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(prometheus-cpp REQUIRED)
find_package(CLI11 QUIET)
find_package(OpenSSL REQUIRED)
find_package(ZLIB REQUIRED)
find_package(GTest REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)

# Debian builds cpp-httplib as a shared library, not header-only.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
add_library(secondread_httplib INTERFACE)
target_link_libraries(secondread_httplib INTERFACE PkgConfig::HTTPLIB)

find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
add_library(secondread_cli11 INTERFACE)
target_include_directories(secondread_cli11 SYSTEM INTERFACE ${CLI11_INCLUDE_DIR})

# The inference contract: Protobuf and gRPC, with their code generators.
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
set(SECONDREAD_PROTOC ${Protobuf_PROTOC_EXECUTABLE})
list(GET Protobuf_INCLUDE_DIRS 0 SECONDREAD_PROTOBUF_INCLUDE)
if(TARGET gRPC::grpc_cpp_plugin)
  get_target_property(SECONDREAD_GRPC_CPP_PLUGIN gRPC::grpc_cpp_plugin IMPORTED_LOCATION_NONE)
  if(NOT SECONDREAD_GRPC_CPP_PLUGIN)
    get_target_property(SECONDREAD_GRPC_CPP_PLUGIN gRPC::grpc_cpp_plugin LOCATION)
  endif()
else()
  find_program(SECONDREAD_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
endif()

# LibTorch, for the inference worker only. Debian's CPU build by default; any
# other LibTorch (a PyTorch installation's, with CUDA) through -DTorch_DIR=.
# Only targets under inference/ and the benchmarks link it: it costs every
# process that loads it start-up time and memory.
find_package(Torch REQUIRED)

# GDCM decodes JPEG 2000, which Debian's DCMTK cannot. Only its MSFF library
# is linked; GDCM's CMake package also describes VTK modules we do not need.
find_path(GDCM_INCLUDE_DIR gdcmImageReader.h PATH_SUFFIXES gdcm-3.0 REQUIRED)
find_library(GDCM_MSFF_LIBRARY gdcmMSFF REQUIRED)
find_library(GDCM_DSED_LIBRARY gdcmDSED REQUIRED)
find_library(GDCM_COMMON_LIBRARY gdcmCommon REQUIRED)
add_library(secondread_gdcm INTERFACE)
target_include_directories(secondread_gdcm SYSTEM INTERFACE ${GDCM_INCLUDE_DIR})
target_link_libraries(secondread_gdcm INTERFACE ${GDCM_MSFF_LIBRARY} ${GDCM_DSED_LIBRARY} ${GDCM_COMMON_LIBRARY})

# RE2 matches routing patterns in linear time, whatever a sender puts in a
# Series Description. It comes with gRPC's development package.
pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
