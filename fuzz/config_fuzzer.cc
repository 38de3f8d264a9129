// The node's configuration (common/config.h and cmd/secondread/options.h's
// ParseNodeOptions): YAML parsing, command-line overrides, every typed
// getter and the rules, tokens, callers, destinations and proxies parsed from
// them. Lines of the input that start with "#set " are YAML comments to the
// parser and are applied as --set overrides, as main applies them.
#include <cstdlib>
#include <string>
#include <string_view>

#include "cmd/secondread/options.h"
#include "common/config.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A database URL from the environment, so inputs without one still reach
  // the sections parsed after it.
  setenv("SECONDREAD_DATABASE_URL", "postgresql://fuzz@127.0.0.1/fuzz", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // database.url_file names a file the parser reads: the one place a
  // configuration reaches the file system, and an operator's choice.
  if (text.find("url_file") != std::string_view::npos) return 0;
  auto tree = secondread::config::ConfigTree::FromString(text);
  if (!tree.ok()) return 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    if (line.substr(0, 5) == "#set ") (void)tree->Override(line.substr(5));
    start = end + 1;
  }
  (void)secondread::config::ParseBytes(text.substr(0, 32));
  (void)secondread::ParseNodeOptions(*tree);
  return 0;
}
