// secondread: the node. main() only parses the command line and wires the
// subcommands to the modules.
#include <iostream>

#include "CLI/CLI.hpp"
#include "cmd/secondread/options.h"
#include "cmd/secondread/serve.h"
#include "worklist/db/migrations.h"

namespace {

int Fail(const absl::Status& st) {
  secondread::log::Error("fatal", {{"error", st.ToString()}});
  std::cerr << "secondread: " << st.ToString() << "\n";
  return 1;
}

absl::StatusOr<secondread::NodeOptions> Load(const std::string& path, const std::vector<std::string>& overrides) {
  auto tree = path.empty() ? secondread::config::ConfigTree::FromString("")
                           : secondread::config::ConfigTree::FromFile(path);
  if (!tree.ok()) return tree.status();
  for (const auto& o : overrides) RETURN_IF_ERROR(tree->Override(o));
  return secondread::ParseNodeOptions(*tree);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"secondread: on-premise DICOM node for AI second reads"};
  app.require_subcommand(1);
  std::string config_path;
  std::vector<std::string> overrides;
  auto add_common = [&](CLI::App* cmd) {
    cmd->add_option("-c,--config", config_path, "YAML configuration file");
    cmd->add_option("--set", overrides, "Override a configuration key: --set dicom.port=11112");
  };
  auto* serve = app.add_subcommand("serve", "Receive DICOM studies and serve metrics and health");
  add_common(serve);
  auto* migrate = app.add_subcommand("migrate", "Apply (or roll back) database schema migrations");
  add_common(migrate);
  int target = -1;
  migrate->add_option("--to", target, "Target schema version (default: latest; 0 removes the schema)");
  app.add_subcommand("version", "Print the version");
  CLI11_PARSE(app, argc, argv);

  if (app.got_subcommand("version")) {
    std::cout << "secondread " << SECONDREAD_VERSION << "\n";
    return 0;
  }
  auto options = Load(config_path, overrides);
  if (!options.ok()) return Fail(options.status());
  if (auto st = secondread::log::Configure(options->log); !st.ok()) return Fail(st);

  if (app.got_subcommand("migrate")) {
    auto result = secondread::worklist::Migrate(options->database, target);
    if (!result.ok()) return Fail(result.status());
    for (const auto& step : result->applied) std::cout << "applied " << step << "\n";
    std::cout << "schema version " << result->from_version << " -> " << result->to_version << "\n";
    return 0;
  }
  absl::Status st = secondread::Serve(*options);
  return st.ok() ? 0 : Fail(st);
}
