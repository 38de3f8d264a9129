// Volume mode of secondread-validate-model: each held-out volume of
// make_heldout3d.py goes through InferenceClient::InferVolume to a live
// worker, and the label map that comes back is scored as evaluate3d.py
// scores it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/grpc_tls.h"

namespace secondread::validate {

struct VolumeScore {
  std::optional<double> dice;  // none for a volume without lesions
  int lesions = 0;
  int detected = 0;
  int false_positives = 0;
  int64_t predicted_voxels = 0;
  int64_t truth_voxels = 0;
};

// 26-connected components of `mask` ([D][H][W], W fastest): ids 1..count,
// numbered by each component's first voxel in C order, 0 outside.
std::vector<uint32_t> ConnectedComponents(const std::vector<uint8_t>& mask, uint32_t d, uint32_t h, uint32_t w,
                                          uint32_t* count);

// evaluate3d.py's lesion_metrics: Dice of all lesion voxels; a lesion is
// detected when a predicted component overlaps it or has its centroid
// (rounded half up, clamped to the grid) inside it; a component that does
// neither is a false positive.
VolumeScore ScoreVolume(const std::vector<uint8_t>& predicted, const std::vector<uint8_t>& truth, uint32_t d,
                        uint32_t h, uint32_t w);

struct VolumeOptions {
  std::string worker;               // host:port
  std::vector<std::string> models;  // each scored on the volumes of its modalities
  std::string heldout;
  std::string report_path;
  double min_dice = 0.8;
  double min_sensitivity = 0.9;
  int timeout_s = 600;
  grpc_tls::ClientOptions tls;  // mutual TLS to the worker; empty: plaintext on loopback
};

// Prints the JSON report (evaluate3d.py's layout) and returns the exit
// status: 0 pass, 1 under a floor or a failed call, 2 a bad held-out set.
int RunVolumeValidation(const VolumeOptions& options);

}  // namespace secondread::validate
