// secondread-worker: the inference worker. The only binary that links
// LibTorch. main() only parses the command line and wires things together.
#include <iostream>

#include "CLI/CLI.hpp"
#include "cmd/secondread-worker/options.h"
#include "cmd/secondread-worker/serve.h"

int main(int argc, char** argv) {
  CLI::App app{"secondread-worker: stateless inference worker serving a model repository over gRPC"};
  std::string config_path;
  std::vector<std::string> overrides;
  app.add_option("-c,--config", config_path, "YAML configuration file");
  app.add_option("--set", overrides, "Override a configuration key: --set grpc.listen=0.0.0.0:50051");
  bool version = false;
  app.add_flag("--version", version, "Print the version");
  CLI11_PARSE(app, argc, argv);
  if (version) {
    std::cout << "secondread-worker " << SECONDREAD_VERSION << "\n";
    return 0;
  }

  auto fail = [](const absl::Status& st) {
    secondread::log::Error("fatal", {{"error", st.ToString()}});
    std::cerr << "secondread-worker: " << st.ToString() << "\n";
    return 1;
  };
  auto tree = config_path.empty() ? secondread::config::ConfigTree::FromString("")
                                  : secondread::config::ConfigTree::FromFile(config_path);
  if (!tree.ok()) return fail(tree.status());
  for (const auto& o : overrides) {
    if (auto st = tree->Override(o); !st.ok()) return fail(st);
  }
  auto options = secondread::ParseWorkerOptions(*tree);
  if (!options.ok()) return fail(options.status());
  if (auto st = secondread::log::Configure(options->log); !st.ok()) return fail(st);
  absl::Status st = secondread::ServeWorker(*options);
  return st.ok() ? 0 : fail(st);
}
