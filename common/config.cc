#include "common/config.h"

#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

#include "yaml-cpp/yaml.h"

namespace secondread::config {

struct ConfigTree::Impl {
  YAML::Node root;
  std::set<std::string> used;
};

namespace {

std::vector<std::string> SplitKey(const std::string& key) {
  std::vector<std::string> parts;
  std::stringstream ss(key);
  std::string part;
  while (std::getline(ss, part, '.')) parts.push_back(part);
  return parts;
}

// Returns an undefined node when any part of the path is missing.
YAML::Node Lookup(const YAML::Node& root, const std::string& key) {
  YAML::Node cur = root;
  for (const auto& part : SplitKey(key)) {
    const YAML::Node& view = cur;
    if (cur.IsSequence()) {
      // "labels.0.name" addresses the first item of a list of mappings.
      size_t index = 0;
      auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), index);
      if (ec != std::errc() || p != part.data() + part.size() || index >= cur.size()) {
        return YAML::Node(YAML::NodeType::Undefined);
      }
      // Copy-construct: yaml-cpp's reset() throws on a missing node, and
      // assignment would write into the tree.
      YAML::Node next = view[index];
      if (!next) return YAML::Node(YAML::NodeType::Undefined);
      cur.reset(next);
    } else if (cur.IsMap()) {
      YAML::Node next = view[part];
      if (!next) return YAML::Node(YAML::NodeType::Undefined);
      cur.reset(next);
    } else {
      return YAML::Node(YAML::NodeType::Undefined);
    }
  }
  return cur;
}

// False when a mapping key is not a plain string (YAML's "? [a, b]"): no
// getter can address it, and converting it would throw.
bool CollectLeaves(const YAML::Node& node, const std::string& prefix, std::vector<std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) return false;
      std::string k = kv.first.Scalar();
      if (!CollectLeaves(kv.second, prefix.empty() ? k : prefix + "." + k, out)) return false;
    }
  } else if (node.IsSequence() && node.size() > 0 && node[0].IsMap()) {
    for (size_t i = 0; i < node.size(); ++i) {
      if (!CollectLeaves(node[i], prefix + "." + std::to_string(i), out)) return false;
    }
  } else if (!prefix.empty()) {
    out.push_back(prefix);
  }
  return true;
}

absl::Status Invalid(const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError("config key '" + key + "': " + what);
}

}  // namespace

ConfigTree::ConfigTree(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ConfigTree::ConfigTree(ConfigTree&&) noexcept = default;
ConfigTree& ConfigTree::operator=(ConfigTree&&) noexcept = default;
ConfigTree::~ConfigTree() = default;

absl::StatusOr<ConfigTree> ConfigTree::FromString(std::string_view yaml) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(std::string("configuration is not valid YAML: ") + e.what());
  }
  if (!impl->root || impl->root.IsNull()) impl->root = YAML::Node(YAML::NodeType::Map);
  if (!impl->root.IsMap()) return absl::InvalidArgumentError("configuration must be a YAML mapping");
  return ConfigTree(std::move(impl));
}

absl::StatusOr<ConfigTree> ConfigTree::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open configuration file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto tree = FromString(ss.str());
  if (!tree.ok()) return absl::InvalidArgumentError(path + ": " + std::string(tree.status().message()));
  return tree;
}

absl::Status ConfigTree::Override(std::string_view assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError("override must look like key=value: " + std::string(assignment));
  }
  std::string key(assignment.substr(0, eq));
  std::string value(assignment.substr(eq + 1));
  YAML::Node parsed;
  try {
    parsed = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    return Invalid(key, std::string("override value is not valid YAML: ") + e.what());
  }
  if (!parsed || parsed.IsNull()) parsed = YAML::Node(value);
  auto parts = SplitKey(key);
  YAML::Node cur = impl_->root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = cur[parts[i]];
    if (!next || !next.IsMap()) {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next = cur[parts[i]];
    }
    cur.reset(next);
  }
  cur[parts.back()] = parsed;
  return absl::OkStatus();
}

absl::StatusOr<std::string> ConfigTree::String(const std::string& key, const std::string& fallback) {
  impl_->used.insert(key);
  YAML::Node n = Lookup(impl_->root, key);
  if (!n || n.IsNull()) return fallback;
  if (!n.IsScalar()) return Invalid(key, "expected a string");
  return n.as<std::string>();
}

absl::StatusOr<int64_t> ConfigTree::Int(const std::string& key, int64_t fallback, int64_t min, int64_t max) {
  ASSIGN_OR_RETURN(std::string text, String(key, std::to_string(fallback)));
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size()) return Invalid(key, "expected an integer, got '" + text + "'");
  if (v < min || v > max) {
    return Invalid(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return v;
}

absl::StatusOr<bool> ConfigTree::Bool(const std::string& key, bool fallback) {
  ASSIGN_OR_RETURN(std::string text, String(key, fallback ? "true" : "false"));
  if (text == "true" || text == "yes" || text == "on" || text == "1") return true;
  if (text == "false" || text == "no" || text == "off" || text == "0") return false;
  return Invalid(key, "expected true or false, got '" + text + "'");
}

absl::StatusOr<uint64_t> ParseBytes(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0) return absl::InvalidArgumentError("expected a size such as 512MiB");
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + i, v);
  if (ec != std::errc()) return absl::InvalidArgumentError("size out of range");
  std::string unit(text.substr(i));
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  uint64_t mul = 1;
  if (unit.empty() || unit == "B") mul = 1;
  else if (unit == "KiB") mul = 1ull << 10;
  else if (unit == "MiB") mul = 1ull << 20;
  else if (unit == "GiB") mul = 1ull << 30;
  else if (unit == "TiB") mul = 1ull << 40;
  else if (unit == "KB") mul = 1000ull;
  else if (unit == "MB") mul = 1000ull * 1000;
  else if (unit == "GB") mul = 1000ull * 1000 * 1000;
  else if (unit == "TB") mul = 1000ull * 1000 * 1000 * 1000;
  else return absl::InvalidArgumentError("unknown size unit '" + unit + "'");
  if (v != 0 && mul > UINT64_MAX / v) return absl::InvalidArgumentError("size out of range");
  return v * mul;
}

absl::StatusOr<uint64_t> ConfigTree::Bytes(const std::string& key, uint64_t fallback) {
  ASSIGN_OR_RETURN(std::string text, String(key, std::to_string(fallback)));
  auto v = ParseBytes(text);
  if (!v.ok()) return Invalid(key, std::string(v.status().message()));
  return *v;
}

absl::StatusOr<std::vector<std::string>> ConfigTree::StringList(const std::string& key,
                                                                const std::vector<std::string>& fallback) {
  impl_->used.insert(key);
  YAML::Node n = Lookup(impl_->root, key);
  if (!n || n.IsNull()) return fallback;
  if (n.IsScalar()) return std::vector<std::string>{n.as<std::string>()};
  if (!n.IsSequence()) return Invalid(key, "expected a list of strings");
  std::vector<std::string> out;
  for (const auto& item : n) {
    if (!item.IsScalar()) return Invalid(key, "expected a list of strings");
    out.push_back(item.as<std::string>());
  }
  return out;
}

absl::StatusOr<double> ConfigTree::Double(const std::string& key, double fallback, double min, double max) {
  impl_->used.insert(key);
  YAML::Node n = Lookup(impl_->root, key);
  if (!n || n.IsNull()) return fallback;
  if (!n.IsScalar()) return Invalid(key, "expected a number");
  double v = 0;
  if (!YAML::convert<double>::decode(n, v)) return Invalid(key, "expected a number, got '" + n.Scalar() + "'");
  if (!(v >= min && v <= max)) {
    return Invalid(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return v;
}

absl::StatusOr<std::vector<double>> ConfigTree::DoubleList(const std::string& key,
                                                           const std::vector<double>& fallback) {
  std::vector<std::string> fallback_text;
  ASSIGN_OR_RETURN(auto items, StringList(key, fallback_text));
  if (items.empty()) return fallback;
  std::vector<double> out;
  for (const auto& text : items) {
    double v = 0;
    if (!YAML::convert<double>::decode(YAML::Node(text), v)) return Invalid(key, "expected numbers, got '" + text + "'");
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> ConfigTree::IntList(const std::string& key, const std::vector<int64_t>& fallback) {
  std::vector<std::string> fallback_text;
  ASSIGN_OR_RETURN(auto items, StringList(key, fallback_text));
  if (items.empty()) return fallback;
  std::vector<int64_t> out;
  for (const auto& text : items) {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size()) return Invalid(key, "expected integers, got '" + text + "'");
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<size_t> ConfigTree::ListSize(const std::string& key) {
  impl_->used.insert(key);
  YAML::Node n = Lookup(impl_->root, key);
  if (!n || n.IsNull()) return 0;
  if (!n.IsSequence()) return Invalid(key, "expected a list");
  return n.size();
}

bool ConfigTree::Has(const std::string& key) const {
  YAML::Node n = Lookup(impl_->root, key);
  return n && !n.IsNull();
}

absl::Status ConfigTree::CheckNoUnknownKeys() const {
  std::vector<std::string> leaves;
  if (!CollectLeaves(impl_->root, "", leaves)) {
    return absl::InvalidArgumentError("configuration keys must be plain strings, not lists or mappings");
  }
  for (const auto& leaf : leaves) {
    if (!impl_->used.count(leaf)) return absl::InvalidArgumentError("unknown configuration key '" + leaf + "'");
  }
  return absl::OkStatus();
}

}  // namespace secondread::config
