#include "tools/validate/volume_validation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include "nlohmann/json.hpp"
#include "worklist/pipeline/inference_client.h"

namespace secondread::validate {
namespace pb = inference::v1;
using nlohmann::json;

std::vector<uint32_t> ConnectedComponents(const std::vector<uint8_t>& mask, uint32_t d, uint32_t h, uint32_t w,
                                          uint32_t* count) {
  const size_t n = size_t{d} * h * w;
  std::vector<uint32_t> ids(n, 0);
  std::vector<size_t> stack;
  uint32_t next = 0;
  for (size_t start = 0; start < n; ++start) {
    if (!mask[start] || ids[start]) continue;
    ids[start] = ++next;
    stack.push_back(start);
    while (!stack.empty()) {
      const size_t v = stack.back();
      stack.pop_back();
      const int64_t z = static_cast<int64_t>(v / (size_t{h} * w));
      const int64_t y = static_cast<int64_t>(v / w % h);
      const int64_t x = static_cast<int64_t>(v % w);
      for (int64_t dz = -1; dz <= 1; ++dz) {
        for (int64_t dy = -1; dy <= 1; ++dy) {
          for (int64_t dx = -1; dx <= 1; ++dx) {
            const int64_t zz = z + dz, yy = y + dy, xx = x + dx;
            if (zz < 0 || yy < 0 || xx < 0 || zz >= d || yy >= h || xx >= w) continue;
            const size_t u = (static_cast<size_t>(zz) * h + static_cast<size_t>(yy)) * w + static_cast<size_t>(xx);
            if (mask[u] && !ids[u]) {
              ids[u] = next;
              stack.push_back(u);
            }
          }
        }
      }
    }
  }
  *count = next;
  return ids;
}

VolumeScore ScoreVolume(const std::vector<uint8_t>& predicted, const std::vector<uint8_t>& truth, uint32_t d,
                        uint32_t h, uint32_t w) {
  const size_t n = size_t{d} * h * w;
  VolumeScore s;
  std::vector<uint8_t> mask(n);
  int64_t inter = 0;
  std::set<int> lesion_ids;
  for (size_t i = 0; i < n; ++i) {
    mask[i] = predicted[i] != 0;
    const bool t = truth[i] != 0;
    s.predicted_voxels += mask[i];
    s.truth_voxels += t;
    inter += mask[i] && t;
    if (t) lesion_ids.insert(truth[i]);
  }
  if (s.truth_voxels > 0)
    s.dice = 2.0 * static_cast<double>(inter) / static_cast<double>(s.predicted_voxels + s.truth_voxels);
  s.lesions = static_cast<int>(lesion_ids.size());

  uint32_t count = 0;
  const auto ids = ConnectedComponents(mask, d, h, w, &count);
  std::vector<double> sum_z(count + 1), sum_y(count + 1), sum_x(count + 1), voxels(count + 1);
  std::vector<std::set<int>> hits(count + 1);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t c = ids[i];
    if (!c) continue;
    sum_z[c] += static_cast<double>(i / (size_t{h} * w));
    sum_y[c] += static_cast<double>(i / w % h);
    sum_x[c] += static_cast<double>(i % w);
    voxels[c] += 1;
    if (truth[i]) hits[c].insert(truth[i]);
  }
  auto centre = [](double sum, double m, uint32_t extent) {
    const double v = std::floor(sum / std::max(m, 1.0) + 0.5);
    return static_cast<size_t>(std::clamp(v, 0.0, static_cast<double>(extent) - 1));
  };
  std::set<int> detected;
  for (uint32_t c = 1; c <= count; ++c) {
    const size_t at =
        (centre(sum_z[c], voxels[c], d) * h + centre(sum_y[c], voxels[c], h)) * w + centre(sum_x[c], voxels[c], w);
    if (truth[at]) hits[c].insert(truth[at]);
    if (hits[c].empty()) {
      ++s.false_positives;
    } else {
      detected.insert(hits[c].begin(), hits[c].end());
    }
  }
  for (int id : detected) s.detected += lesion_ids.count(id) ? 1 : 0;
  return s;
}

namespace {

double Round6(double v) { return std::round(v * 1e6) / 1e6; }

json Summarise(const std::vector<json>& rows) {
  std::vector<double> dices;
  int lesions = 0, detected = 0, fps = 0;
  for (const auto& r : rows) {
    if (!r.at("dice").is_null()) dices.push_back(r.at("dice").get<double>());
    lesions += r.at("lesions").get<int>();
    detected += r.at("detected").get<int>();
    fps += r.at("false_positives").get<int>();
  }
  json s = {{"volumes", rows.size()},
            {"volumes_with_lesions", dices.size()},
            {"lesions", lesions},
            {"detected", detected},
            {"false_positives", fps}};
  if (dices.empty()) {
    s["dice"] = nullptr;
    s["dice_min"] = nullptr;
  } else {
    double sum = 0;
    for (double v : dices) sum += v;
    s["dice"] = Round6(sum / static_cast<double>(dices.size()));
    s["dice_min"] = Round6(*std::min_element(dices.begin(), dices.end()));
  }
  s["sensitivity"] = lesions ? json(Round6(static_cast<double>(detected) / lesions)) : json(nullptr);
  s["false_positives_per_volume"] =
      rows.empty() ? json(nullptr) : json(Round6(static_cast<double>(fps) / static_cast<double>(rows.size())));
  return s;
}

bool ReadFile(const std::string& path, size_t bytes, std::vector<uint8_t>* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->resize(bytes);
  in.read(reinterpret_cast<char*>(out->data()), static_cast<std::streamsize>(bytes));
  return static_cast<size_t>(in.gcount()) == bytes && in.peek() == std::char_traits<char>::eof();
}

}  // namespace

int RunVolumeValidation(const VolumeOptions& options) {
  std::ifstream mf(options.heldout + "/manifest.json");
  if (!mf) {
    std::cerr << "cannot open " << options.heldout << "/manifest.json\n";
    return 2;
  }
  json manifest;
  try {
    manifest = json::parse(mf);
    if (!manifest.contains("volumes")) throw std::runtime_error("no \"volumes\": not a volume held-out set");
  } catch (const std::exception& e) {
    std::cerr << "manifest.json: " << e.what() << "\n";
    return 2;
  }

  worklist::InferenceClientOptions client_options;
  client_options.endpoints = {options.worker};
  client_options.volume_call_timeout = std::chrono::seconds(options.timeout_s);
  client_options.max_attempts = 1;
  client_options.tls = options.tls;
  auto client = worklist::InferenceClient::Create(client_options);
  if (!client.ok()) {
    std::cerr << "inference client: " << client.status() << "\n";
    return 1;
  }

  json result = {{"control", "none"},
                 {"min_dice", options.min_dice},
                 {"min_sensitivity", options.min_sensitivity},
                 {"worker", options.worker},
                 {"models", json::object()}};
  std::vector<json> all_rows;
  std::vector<std::string> failures;
  const auto start = std::chrono::steady_clock::now();
  for (const auto& model : options.models) {
    auto description = (*client)->Describe(model, 0);
    if (!description.ok()) {
      std::cerr << "describe " << model << ": " << description.status() << "\n";
      return 1;
    }
    const auto& modalities = description->applicability().modalities();
    std::vector<json> rows;
    for (const auto& v : manifest.at("volumes")) {
      const std::string modality = v.at("modality").get<std::string>();
      if (!modalities.empty() && std::find(modalities.begin(), modalities.end(), modality) == modalities.end()) {
        continue;
      }
      const std::string file = v.at("file").get<std::string>();
      const std::string labels = v.at("labels").get<std::string>();
      if (file.find('/') != std::string::npos || labels.find('/') != std::string::npos) {
        std::cerr << "manifest file names must be plain names\n";
        return 2;
      }
      const auto shape = v.at("shape").get<std::vector<uint32_t>>();
      const auto spacing = v.at("spacing").get<std::vector<double>>();
      const auto direction = v.value("direction", std::vector<double>{1, 0, 0, 0, 1, 0, 0, 0, 1});
      if (shape.size() != 3 || spacing.size() != 3 || direction.size() != 9 ||
          v.value("dtype", "float32") != "float32" || v.value("labels_dtype", "uint8") != "uint8") {
        std::cerr << file << ": expected float32 voxels, uint8 labels, a 3D shape, spacing and direction\n";
        return 2;
      }
      const size_t count = size_t{shape[0]} * shape[1] * shape[2];
      std::vector<uint8_t> raw, truth;
      if (!ReadFile(options.heldout + "/" + file, count * 4, &raw) ||
          !ReadFile(options.heldout + "/" + labels, count, &truth)) {
        std::cerr << file << ": missing, or not the size its shape says\n";
        return 2;
      }
      std::vector<float> voxels(count);
      for (size_t i = 0; i < count; ++i) {  // little-endian on disk
        const uint32_t bits = uint32_t{raw[4 * i]} | uint32_t{raw[4 * i + 1]} << 8 | uint32_t{raw[4 * i + 2]} << 16 |
                              uint32_t{raw[4 * i + 3]} << 24;
        std::memcpy(&voxels[i], &bits, 4);
      }
      raw.clear();
      raw.shrink_to_fit();

      worklist::VolumeCall call;
      call.model = model;
      call.job_token = "validate-" + file;
      call.shape = {shape[0], shape[1], shape[2]};
      call.voxels = voxels.data();
      for (int i = 0; i < 3; ++i) call.spacing_mm[i] = spacing[i];
      for (int i = 0; i < 9; ++i) call.direction[i] = direction[i];
      call.modality.set_scheme("DCM");
      call.modality.set_value(modality);
      const auto t0 = std::chrono::steady_clock::now();
      auto answer = (*client)->InferVolume(call);
      if (!answer.ok()) {
        std::cerr << model << " " << file << ": " << answer.status() << "\n";
        return 1;
      }
      const auto& h = answer->header;
      if (h.shape_size() != 3 || h.shape(0) != shape[0] || h.shape(1) != shape[1] || h.shape(2) != shape[2] ||
          answer->maps.empty() || h.maps(0).kind() != pb::VOLUME_MAP_KIND_LABEL_MAP ||
          answer->maps[0].size() != count) {
        std::cerr << model << " " << file << ": no label map on the source grid\n";
        return 1;
      }
      const VolumeScore s = ScoreVolume(answer->maps[0], truth, shape[0], shape[1], shape[2]);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      json row = {{"file", file},
                  {"kind", v.value("kind", "")},
                  {"dice", s.dice ? json(Round6(*s.dice)) : json(nullptr)},
                  {"lesions", s.lesions},
                  {"detected", s.detected},
                  {"false_positives", s.false_positives},
                  {"predicted_voxels", s.predicted_voxels},
                  {"truth_voxels", s.truth_voxels},
                  {"seconds", std::round(seconds * 100) / 100}};
      std::cerr << model << " " << file << " dice " << row["dice"] << " detected " << s.detected << "/" << s.lesions
                << " fp " << s.false_positives << "\n";
      rows.push_back(row);
    }
    json summary = Summarise(rows);
    result["models"][model] = {{"version", description->version()}, {"summary", summary}, {"volumes", rows}};
    all_rows.insert(all_rows.end(), rows.begin(), rows.end());
    if (rows.empty()) {
      failures.push_back(model + ": no held-out volume of its modality");
      continue;
    }
    if (summary["dice"].is_null() || summary["dice"].get<double>() < options.min_dice) {
      failures.push_back(model + ": mean Dice " + summary["dice"].dump() + " under " +
                         std::to_string(options.min_dice));
    }
    if (summary["sensitivity"].is_null() || summary["sensitivity"].get<double>() < options.min_sensitivity) {
      failures.push_back(model + ": sensitivity " + summary["sensitivity"].dump() + " under " +
                         std::to_string(options.min_sensitivity));
    }
  }
  result["overall"] = Summarise(all_rows);
  result["passed"] = failures.empty();
  result["failures"] = failures;
  result["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << result.dump(1) << "\n";
  if (!options.report_path.empty()) std::ofstream(options.report_path) << result.dump(1) << "\n";
  for (const auto& f : failures) std::cerr << "gate: " << f << "\n";
  return failures.empty() ? 0 : 1;
}

}  // namespace secondread::validate
