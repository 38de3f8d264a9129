// A YAML configuration tree with command-line overrides. yaml-cpp is used only
// here; modules receive plain Options structs that main() fills from this tree.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace secondread::config {

class ConfigTree {
 public:
  static absl::StatusOr<ConfigTree> FromFile(const std::string& path);
  static absl::StatusOr<ConfigTree> FromString(std::string_view yaml);

  ConfigTree(ConfigTree&&) noexcept;
  ConfigTree& operator=(ConfigTree&&) noexcept;
  ~ConfigTree();

  // Applies "dotted.key=value"; the value is parsed as YAML, so lists can be
  // given in flow style: dicom.allowed_callers=[STORESCU, ORTHANC@10.0.0.5].
  absl::Status Override(std::string_view assignment);

  absl::StatusOr<std::string> String(const std::string& key, const std::string& fallback);
  absl::StatusOr<int64_t> Int(const std::string& key, int64_t fallback, int64_t min, int64_t max);
  absl::StatusOr<bool> Bool(const std::string& key, bool fallback);
  // Accepts a plain byte count or a number with KiB/MiB/GiB/TiB (or KB/MB/GB/TB).
  absl::StatusOr<uint64_t> Bytes(const std::string& key, uint64_t fallback);
  absl::StatusOr<std::vector<std::string>> StringList(const std::string& key,
                                                      const std::vector<std::string>& fallback);

  absl::StatusOr<double> Double(const std::string& key, double fallback, double min, double max);
  absl::StatusOr<std::vector<double>> DoubleList(const std::string& key, const std::vector<double>& fallback);
  absl::StatusOr<std::vector<int64_t>> IntList(const std::string& key, const std::vector<int64_t>& fallback);
  // Number of items in a list; items of a list of mappings are addressed as
  // "key.0.field", "key.1.field", ...
  absl::StatusOr<size_t> ListSize(const std::string& key);
  bool Has(const std::string& key) const;

  // Fails on any key that no getter asked for, so typos are refused at start.
  absl::Status CheckNoUnknownKeys() const;

 private:
  struct Impl;
  explicit ConfigTree(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

absl::StatusOr<uint64_t> ParseBytes(std::string_view text);

}  // namespace secondread::config
