// secondread-validate-model: runs a real worker over a held-out set and
// reports AUC, sensitivity and specificity at the model's operating threshold,
// and how often the heatmap peak of a true positive falls inside the lesion.
// Exits non-zero when the figures are under the given floors, so CI can gate
// a model on them.
//
// With --volume the held-out set is make_heldout3d.py's: each volume is
// streamed through InferenceClient::InferVolume, and the label map that
// comes back is scored per model as evaluate3d.py scores it (mean Dice,
// lesion-level sensitivity, false positives per volume), gated on
// --min-dice and --min-sensitivity (volume_validation.h).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "CLI/CLI.hpp"
#include "common/grpc_tls.h"
#include "nlohmann/json.hpp"
#include "secondread/inference/v1/inference.grpc.pb.h"
#include "tools/validate/volume_validation.h"

namespace v1 = secondread::inference::v1;
using nlohmann::json;

namespace {

struct Case {
  std::string file;
  uint32_t rows = 0, cols = 0;
  int label = 0;
  bool has_lesion = false;
  double lesion_row = 0, lesion_col = 0, lesion_radius = 0;
  // Filled from the worker.
  float score = 0;
  bool above = false;
  bool peak_in_lesion = false;
  bool done = false;
};

// Mann-Whitney U with average ranks for ties.
double Auc(const std::vector<Case>& cases) {
  std::vector<std::pair<float, int>> v;
  for (const auto& c : cases) v.emplace_back(c.score, c.label);
  std::sort(v.begin(), v.end());
  double pos = 0, neg = 0, rank_sum = 0;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j < v.size() && v[j].first == v[i].first) ++j;
    const double avg_rank = (static_cast<double>(i) + static_cast<double>(j) + 1) / 2.0;
    for (size_t k = i; k < j; ++k) {
      if (v[k].second == 1) rank_sum += avg_rank;
    }
    i = j;
  }
  for (const auto& p : v) (p.second == 1 ? pos : neg) += 1;
  if (pos == 0 || neg == 0) return 0;
  return (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Validate a model through a running secondread-worker on a held-out set"};
  std::string target, heldout, report_path;
  std::vector<std::string> models;
  double min_auc = 0, min_localization = 0;
  int concurrency = 4, per_request = 1;
  bool volume = false;
  double min_dice = 0.8, min_sensitivity = 0.9;
  int volume_timeout = 600;
  app.add_option("--worker", target, "Worker address HOST:PORT")->required();
  app.add_option("--model", models, "Model name (with --volume, repeat it to score several models)")->required();
  app.add_option("--heldout", heldout, "Directory with manifest.json and raw images")->required();
  app.add_flag("--volume", volume, "The held-out set holds volumes (make_heldout3d.py); score segmentations");
  app.add_option("--min-dice", min_dice, "With --volume: fail a model under this mean Dice");
  app.add_option("--min-sensitivity", min_sensitivity, "With --volume: fail a model under this lesion sensitivity");
  app.add_option("--volume-timeout", volume_timeout, "With --volume: seconds one volume may take")
      ->check(CLI::Range(1, 86400));
  app.add_option("--report", report_path, "Write the report (JSON) here");
  app.add_option("--min-auc", min_auc, "Fail under this AUC");
  app.add_option("--min-localization", min_localization, "Fail under this localization rate");
  app.add_option("--concurrency", concurrency, "Concurrent requests")->check(CLI::Range(1, 256));
  app.add_option("--images-per-request", per_request, "Images per request")->check(CLI::Range(1, 64));
  secondread::grpc_tls::ClientOptions tls;
  app.add_option("--tls-certificate", tls.files.certificate, "Client certificate (PEM) for a worker with mutual TLS");
  app.add_option("--tls-private-key", tls.files.private_key, "Its private key (PEM)");
  app.add_option("--tls-ca", tls.files.ca, "CA bundle (PEM) the worker's certificate comes from");
  app.add_option("--tls-server-name", tls.server_name,
                 "Name the worker's certificate must carry; default the host of --worker");
  CLI11_PARSE(app, argc, argv);
  if (tls.files.enabled() && (tls.files.certificate.empty() || tls.files.private_key.empty() || tls.files.ca.empty())) {
    std::cerr << "--tls-certificate, --tls-private-key and --tls-ca go together\n";
    return 2;
  }
  // The same rule as the node's: plaintext gRPC only on loopback.
  if (!tls.files.enabled() && !secondread::grpc_tls::IsLoopback(target)) {
    std::cerr << "--worker " << target
              << " is not on loopback: reach it over mutual TLS (--tls-certificate, --tls-private-key, --tls-ca)\n";
    return 2;
  }

  if (volume) {
    secondread::validate::VolumeOptions options;
    options.worker = target;
    options.models = models;
    options.heldout = heldout;
    options.report_path = report_path;
    options.min_dice = min_dice;
    options.min_sensitivity = min_sensitivity;
    options.timeout_s = volume_timeout;
    options.tls = tls;
    return secondread::validate::RunVolumeValidation(options);
  }
  if (models.size() != 1) {
    std::cerr << "--model: one model without --volume\n";
    return 2;
  }
  const std::string& model = models.front();

  std::ifstream mf(heldout + "/manifest.json");
  if (!mf) {
    std::cerr << "cannot open " << heldout << "/manifest.json\n";
    return 2;
  }
  json manifest;
  try {
    manifest = json::parse(mf);
  } catch (const std::exception& e) {
    std::cerr << "manifest.json: " << e.what() << "\n";
    return 2;
  }
  if (!manifest.contains("images")) {
    std::cerr << "manifest.json lists no images" << (manifest.contains("volumes") ? "; volumes need --volume" : "")
              << "\n";
    return 2;
  }
  std::vector<Case> cases;
  for (const auto& m : manifest.at("images")) {
    Case c;
    c.file = m.at("file").get<std::string>();
    c.rows = m.at("rows").get<uint32_t>();
    c.cols = m.at("cols").get<uint32_t>();
    c.label = m.at("label").get<int>();
    if (m.contains("lesion") && !m.at("lesion").is_null()) {
      c.has_lesion = true;
      c.lesion_row = m["lesion"].at("row").get<double>();
      c.lesion_col = m["lesion"].at("col").get<double>();
      c.lesion_radius = m["lesion"].at("radius").get<double>();
    }
    if (c.file.find('/') != std::string::npos) {
      std::cerr << "manifest file names must be plain names\n";
      return 2;
    }
    cases.push_back(c);
  }

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (tls.files.enabled()) {
    auto c = secondread::grpc_tls::ChannelCredentials(tls, target, &args);
    if (!c.ok()) {
      std::cerr << c.status().message() << "\n";
      return 2;
    }
    credentials = *c;
  }
  auto channel = grpc::CreateCustomChannel(target, credentials, args);
  auto stub = v1::Inference::NewStub(channel);

  std::atomic<size_t> next{0};
  std::atomic<int> failures{0};
  std::mutex err_mu;
  std::string first_error;
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (;;) {
      const size_t begin = next.fetch_add(static_cast<size_t>(per_request));
      if (begin >= cases.size()) return;
      const size_t end = std::min(cases.size(), begin + static_cast<size_t>(per_request));
      v1::InferRequest req;
      req.set_model_name(model);
      req.set_job_token("validate-" + std::to_string(begin));
      for (size_t i = begin; i < end; ++i) {
        std::ifstream in(heldout + "/" + cases[i].file, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        auto* img = req.add_images();
        img->add_shape(cases[i].rows);
        img->add_shape(cases[i].cols);
        img->set_dtype(v1::DATA_TYPE_UINT16);
        img->set_data(ss.str());
        img->set_photometric(v1::PHOTOMETRIC_MONOCHROME2);
      }
      v1::InferResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
      grpc::Status s = stub->Infer(&ctx, req, &resp);
      if (!s.ok() || resp.results_size() != static_cast<int>(end - begin)) {
        failures += 1;
        std::lock_guard lk(err_mu);
        if (first_error.empty()) first_error = s.ok() ? "wrong number of results" : s.error_message();
        continue;
      }
      for (size_t i = begin; i < end; ++i) {
        const auto& r = resp.results(static_cast<int>(i - begin));
        Case& c = cases[i];
        c.score = r.scores(0).score();
        c.above = r.scores(0).above_threshold();
        if (r.heatmaps_size() > 0 && c.has_lesion) {
          const auto& h = r.heatmaps(0);
          const auto peak = std::max_element(h.values().begin(), h.values().end()) - h.values().begin();
          const double row = (static_cast<double>(peak / h.width()) + 0.5) * c.rows / h.height();
          const double col = (static_cast<double>(peak % h.width()) + 0.5) * c.cols / h.width();
          c.peak_in_lesion = std::hypot(row - c.lesion_row, col - c.lesion_col) <= c.lesion_radius;
        }
        c.done = true;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < concurrency; ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (failures > 0) {
    std::cerr << failures << " requests failed; first error: " << first_error << "\n";
    return 1;
  }

  int tp = 0, fn = 0, tn = 0, fp = 0, localized = 0;
  for (const auto& c : cases) {
    if (c.label == 1) {
      if (c.above) {
        ++tp;
        if (c.peak_in_lesion) ++localized;
      } else {
        ++fn;
      }
    } else {
      (c.above ? fp : tn) += 1;
    }
  }
  const double auc = Auc(cases);
  const double sensitivity = tp + fn ? static_cast<double>(tp) / (tp + fn) : 0;
  const double specificity = tn + fp ? static_cast<double>(tn) / (tn + fp) : 0;
  const double localization = tp ? static_cast<double>(localized) / tp : 0;
  const bool pass = auc >= min_auc && localization >= min_localization;
  json report = {{"model", model},
                 {"images", cases.size()},
                 {"positives", tp + fn},
                 {"negatives", tn + fp},
                 {"auc", auc},
                 {"sensitivity", sensitivity},
                 {"specificity", specificity},
                 {"true_positives", tp},
                 {"false_positives", fp},
                 {"true_negatives", tn},
                 {"false_negatives", fn},
                 {"localization", localization},
                 {"min_auc", min_auc},
                 {"min_localization", min_localization},
                 {"seconds", seconds},
                 {"pass", pass}};
  std::cout << report.dump(2) << "\n";
  if (!report_path.empty()) std::ofstream(report_path) << report.dump(2) << "\n";
  if (!pass) {
    std::cerr << "validation FAILED: AUC " << auc << " (floor " << min_auc << "), localization " << localization
              << " (floor " << min_localization << ")\n";
    return 1;
  }
  return 0;
}
