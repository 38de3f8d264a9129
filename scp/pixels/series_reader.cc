#include "scp/pixels/series_reader.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcitem.h"
#include "dcmtk/dcmdata/dcsequen.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "scp/pixels/pixel_decoder.h"
#include "scp/pixels/suv.h"

namespace secondread::scp {
namespace {

namespace fs = std::filesystem;

const std::set<std::string> kClassic = {
    "1.2.840.10008.5.1.4.1.1.2",    // CT Image Storage
    "1.2.840.10008.5.1.4.1.1.4",    // MR Image Storage
    "1.2.840.10008.5.1.4.1.1.128",  // Positron Emission Tomography Image Storage
};
const std::set<std::string> kEnhanced = {
    "1.2.840.10008.5.1.4.1.1.2.1",    // Enhanced CT
    "1.2.840.10008.5.1.4.1.1.2.2",    // Legacy Converted Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4.1",    // Enhanced MR
    "1.2.840.10008.5.1.4.1.1.4.4",    // Legacy Converted Enhanced MR
    "1.2.840.10008.5.1.4.1.1.130",    // Enhanced PET
    "1.2.840.10008.5.1.4.1.1.128.1",  // Legacy Converted Enhanced PET
};

// Tags not every DCMTK dictionary names.
const DcmTagKey kUnassignedShared(0x0020, 0x9170);
const DcmTagKey kUnassignedPerFrame(0x0020, 0x9171);

std::string Str(DcmItem* item, const DcmTagKey& tag) {
  OFString v;
  if (item != nullptr && item->findAndGetOFStringArray(tag, v).good()) return std::string(v.c_str(), v.length());
  return {};
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  size_t b = 0;
  while (b < s.size() && s[b] == ' ') ++b;
  return s.substr(b);
}

// Attribute values are untrusted text: only finite numbers count.
bool Doubles(DcmItem* item, const DcmTagKey& tag, size_t n, double* out) {
  if (item == nullptr) return false;
  for (size_t i = 0; i < n; ++i) {
    OFString text;
    if (item->findAndGetOFString(tag, text, static_cast<unsigned long>(i)).bad()) return false;
    const std::string t = Trim(std::string(text.c_str()));
    char* end = nullptr;
    const double v = std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size() || !std::isfinite(v)) return false;
    out[i] = v;
  }
  return true;
}

DcmItem* Item(DcmItem* parent, const DcmTagKey& seq) {
  DcmItem* it = nullptr;
  if (parent != nullptr && parent->findAndGetSequenceItem(seq, it, 0).good()) return it;
  return nullptr;
}

// A functional group macro of one frame: the per-frame one overrides the
// shared one.
DcmItem* Macro(DcmItem* per_frame, DcmItem* shared, const DcmTagKey& seq) {
  if (DcmItem* it = Item(per_frame, seq)) return it;
  return Item(shared, seq);
}

// An attribute of the object that legacy converted objects may keep in their
// unassigned converted attributes instead of the top level.
std::string Attr(DcmItem* ds, DcmItem* per_frame, DcmItem* shared, const DcmTagKey& tag) {
  std::string v = Str(ds, tag);
  if (v.empty()) v = Str(Item(per_frame, kUnassignedPerFrame), tag);
  if (v.empty()) v = Str(Item(shared, kUnassignedShared), tag);
  return v;
}

std::string PhilipsSuvFactor(DcmItem* ds) {
  for (Uint16 block = 0x10; block <= 0xFF; ++block) {
    OFString creator;
    if (ds->findAndGetOFString(DcmTagKey(0x7053, block), creator).bad()) continue;
    if (Trim(std::string(creator.c_str())) != "Philips PET Private Group") continue;
    DcmElement* element = nullptr;
    if (ds->findAndGetElement(DcmTagKey(0x7053, static_cast<Uint16>(block << 8)), element).bad() ||
        element == nullptr) {
      continue;
    }
    if (element->ident() == EVR_DS) {
      OFString value;
      if (element->getOFString(value, 0).good()) return Trim(std::string(value.c_str()));
      continue;
    }
    // DCMTK's dictionary does not know Philips' tags: read implicitly, the
    // DS value has no VR and its text comes as bytes (getOFString would give
    // the first byte in hex).
    Uint8* bytes = nullptr;
    if (element->getUint8Array(bytes).good() && bytes != nullptr) {
      return Trim(std::string(reinterpret_cast<const char*>(bytes), element->getLength()));
    }
  }
  return {};
}

struct ObjectInfo {
  std::string path;
  uint32_t frames = 1;
  bool multi_frame = false;
  // Single-frame, Rescale Slope 1 and an integral intercept: the decoder's
  // integer modality values are then exact, and the object decodes as it is.
  bool exact_in_decoder = false;
};

struct FrameRecord {
  SliceGeometry geometry;
  size_t object = 0;
  uint32_t frame_index = 0;  // 0-based within the object
  double slope = 1;
  double intercept = 0;
  PetAttributes pet;
};

struct SeriesRecords {
  std::string modality;
  std::vector<ObjectInfo> objects;
  std::vector<FrameRecord> frames;
};

absl::Status Unreadable(size_t index, size_t total, const std::string& why) {
  return VolumeRefusal("unreadable_object", "object " + std::to_string(index + 1) + " of " + std::to_string(total) +
                                                " cannot be read as an image: " + why);
}

// Rescale of a frame; identity when the object has none.
absl::Status ReadRescale(DcmItem* item, FrameRecord* r) {
  double v = 0;
  const bool has_slope = item != nullptr && item->tagExists(DCM_RescaleSlope);
  const bool has_intercept = item != nullptr && item->tagExists(DCM_RescaleIntercept);
  if (has_slope) {
    if (!Doubles(item, DCM_RescaleSlope, 1, &v) || v == 0) return absl::InvalidArgumentError("invalid Rescale Slope");
    r->slope = v;
  }
  if (has_intercept) {
    if (!Doubles(item, DCM_RescaleIntercept, 1, &v)) return absl::InvalidArgumentError("invalid Rescale Intercept");
    r->intercept = v;
  }
  return absl::OkStatus();
}

void ReadGeometryFrom(DcmItem* position, DcmItem* orientation, DcmItem* measures, SliceGeometry* g) {
  double p[3], o[6], s[2];
  if (Doubles(position, DCM_ImagePositionPatient, 3, p)) {
    g->has_position = true;
    g->position = {p[0], p[1], p[2]};
  }
  if (Doubles(orientation, DCM_ImageOrientationPatient, 6, o)) {
    g->has_orientation = true;
    g->row_direction = {o[0], o[1], o[2]};
    g->column_direction = {o[3], o[4], o[5]};
  }
  if (Doubles(measures, DCM_PixelSpacing, 2, s)) {
    g->row_spacing_mm = s[0];
    g->column_spacing_mm = s[1];
  }
}

PetAttributes ReadPet(DcmItem* ds, DcmItem* per_frame, DcmItem* shared, DcmItem* frame_content) {
  PetAttributes a;
  a.units = Attr(ds, per_frame, shared, DCM_Units);
  a.decay_correction = Attr(ds, per_frame, shared, DCM_DecayCorrection);
  a.corrected_image = Attr(ds, per_frame, shared, DCM_CorrectedImage);
  a.patient_weight_kg = Str(ds, DCM_PatientWeight);
  DcmItem* radio = Item(ds, DCM_RadiopharmaceuticalInformationSequence);
  a.total_dose_bq = Str(radio, DCM_RadionuclideTotalDose);
  a.half_life_s = Str(radio, DCM_RadionuclideHalfLife);
  a.injection_datetime = Str(radio, DCM_RadiopharmaceuticalStartDateTime);
  a.injection_time = Str(radio, DCM_RadiopharmaceuticalStartTime);
  a.series_date = Str(ds, DCM_SeriesDate);
  a.series_time = Str(ds, DCM_SeriesTime);
  a.acquisition_date = Attr(ds, per_frame, shared, DCM_AcquisitionDate);
  a.acquisition_time = Attr(ds, per_frame, shared, DCM_AcquisitionTime);
  a.acquisition_datetime = Str(frame_content, DCM_FrameAcquisitionDateTime);
  if (a.acquisition_datetime.empty()) a.acquisition_datetime = Attr(ds, per_frame, shared, DCM_AcquisitionDateTime);
  a.timezone_offset = Str(ds, DCM_TimezoneOffsetFromUTC);
  a.philips_suv_factor = PhilipsSuvFactor(ds);
  return a;
}

absl::StatusOr<SeriesRecords> ReadRecords(const std::vector<std::string>& paths) {
  SeriesRecords out;
  if (paths.empty()) return VolumeRefusal("too_few_slices", "the series has no images");
  std::string series_uid, photometric_kind;
  const size_t total = paths.size();
  for (size_t o = 0; o < total; ++o) {
    DcmFileFormat file;
    // Pixel Data and other long values stay on disk until decoding.
    const OFCondition cond = file.loadFile(paths[o].c_str(), EXS_Unknown, EGL_noChange, 4096, ERM_fileOnly);
    if (cond.bad()) return Unreadable(o, total, "not a readable DICOM file");
    DcmDataset* ds = file.getDataset();
    const std::string sop_class = Trim(Str(ds, DCM_SOPClassUID));
    const bool enhanced = kEnhanced.count(sop_class) > 0;
    if (!enhanced && kClassic.count(sop_class) == 0) {
      return VolumeRefusal("unsupported_object", "object " + std::to_string(o + 1) + " of " + std::to_string(total) +
                                                     " is not a CT, MR or PET image (SOP Class " + sop_class + ")");
    }
    const std::string modality = Trim(Str(ds, DCM_Modality));
    const std::string series = Trim(Str(ds, DCM_SeriesInstanceUID));
    if (o == 0) {
      out.modality = modality;
      series_uid = series;
    } else if (modality != out.modality || series != series_uid) {
      return VolumeRefusal("mixed_series", "the objects belong to more than one series or modality");
    }
    if (modality != "CT" && modality != "MR" && modality != "PT") {
      return VolumeRefusal("unsupported_object", "the series is of modality '" + modality + "', not CT, MR or PT");
    }
    Uint16 samples = 1;
    if (ds->findAndGetUint16(DCM_SamplesPerPixel, samples).good() && samples != 1) {
      return VolumeRefusal("not_greyscale", "the images are in colour; a volume is read from greyscale images");
    }
    if (ds->tagExists(DCM_ModalityLUTSequence)) {
      return VolumeRefusal("modality_lut",
                           "the images map their values through a Modality LUT, which volumes do not apply");
    }
    Uint16 rows = 0, columns = 0;
    ds->findAndGetUint16(DCM_Rows, rows);
    ds->findAndGetUint16(DCM_Columns, columns);
    const std::string sop_instance = Trim(Str(ds, DCM_SOPInstanceUID));
    const std::string frame_of_reference = Trim(Str(ds, DCM_FrameOfReferenceUID));

    ObjectInfo info;
    info.path = paths[o];
    long frames = 1;
    const std::string frames_text = Trim(Str(ds, DCM_NumberOfFrames));
    if (!frames_text.empty()) {
      char* end = nullptr;
      frames = std::strtol(frames_text.c_str(), &end, 10);
      if (end != frames_text.c_str() + frames_text.size() || frames < 1 || frames > 65535) {
        return Unreadable(o, total, "Number of Frames is invalid");
      }
    }
    info.frames = static_cast<uint32_t>(frames);
    info.multi_frame = enhanced;
    if (!enhanced && frames != 1) return Unreadable(o, total, "a single-frame image class with several frames");

    if (!enhanced) {
      FrameRecord r;
      r.object = o;
      SliceGeometry& g = r.geometry;
      g.sop_instance_uid = sop_instance;
      g.rows = rows;
      g.columns = columns;
      g.frame_of_reference_uid = frame_of_reference;
      ReadGeometryFrom(ds, ds, ds, &g);
      g.stack_key[kTemporalPosition] = Trim(Str(ds, DCM_TemporalPositionIdentifier));
      // Dynamic PET in classic images tells its time frames apart this way.
      if (g.stack_key[kTemporalPosition].empty())
        g.stack_key[kTemporalPosition] = Trim(Str(ds, DCM_FrameReferenceTime));
      g.stack_key[kEchoNumber] = Trim(Str(ds, DCM_EchoNumbers));
      g.stack_key[kTriggerTime] = Trim(Str(ds, DCM_TriggerTime));
      g.stack_key[kAcquisitionNumber] = Trim(Str(ds, DCM_AcquisitionNumber));
      if (absl::Status s = ReadRescale(ds, &r); !s.ok()) return Unreadable(o, total, std::string(s.message()));
      if (modality == "PT") r.pet = ReadPet(ds, nullptr, nullptr, nullptr);
      info.exact_in_decoder = r.slope == 1.0 && r.intercept == std::floor(r.intercept) &&
                              ds->tagExists(DCM_RescaleSlope) == ds->tagExists(DCM_RescaleIntercept);
      out.frames.push_back(std::move(r));
    } else {
      DcmItem* shared = Item(ds, DCM_SharedFunctionalGroupsSequence);
      DcmSequenceOfItems* per_frame_seq = nullptr;
      if (ds->findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, per_frame_seq).bad() ||
          per_frame_seq == nullptr || per_frame_seq->card() != static_cast<unsigned long>(frames)) {
        return Unreadable(o, total, "the Per-Frame Functional Groups do not match the Number of Frames");
      }
      for (uint32_t f = 0; f < static_cast<uint32_t>(frames); ++f) {
        DcmItem* pf = per_frame_seq->getItem(f);
        FrameRecord r;
        r.object = o;
        r.frame_index = f;
        SliceGeometry& g = r.geometry;
        g.sop_instance_uid = sop_instance;
        g.frame_number = f + 1;
        g.rows = rows;
        g.columns = columns;
        g.frame_of_reference_uid = frame_of_reference;
        ReadGeometryFrom(Macro(pf, shared, DCM_PlanePositionSequence), Macro(pf, shared, DCM_PlaneOrientationSequence),
                         Macro(pf, shared, DCM_PixelMeasuresSequence), &g);
        DcmItem* content = Macro(pf, shared, DCM_FrameContentSequence);
        g.stack_key[kStackId] = Trim(Str(content, DCM_StackID));
        g.stack_key[kTemporalPosition] = Trim(Str(content, DCM_TemporalPositionIndex));
        g.stack_key[kAcquisitionNumber] = Trim(Str(content, DCM_FrameAcquisitionNumber));
        // Enhanced MR names its echoes by their effective echo time.
        g.stack_key[kEchoNumber] = Trim(Str(Macro(pf, shared, DCM_MREchoSequence), DCM_EffectiveEchoTime));
        if (absl::Status s = ReadRescale(Macro(pf, shared, DCM_PixelValueTransformationSequence), &r); !s.ok()) {
          return Unreadable(o, total, "frame " + std::to_string(f + 1) + ": " + std::string(s.message()));
        }
        if (modality == "PT") r.pet = ReadPet(ds, pf, shared, content);
        out.frames.push_back(std::move(r));
      }
    }
    out.objects.push_back(std::move(info));
  }
  return out;
}

// A private directory for de-rescaled copies, removed with this object.
class ScratchDir {
 public:
  ~ScratchDir() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  absl::Status Create(const std::string& parent) {
    std::string base = parent;
    if (base.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    }
    std::string templ = (fs::path(base) / "secondread-volume-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) {
      return absl::UnavailableError("cannot create a scratch directory under " + base);
    }
    path_ = templ;
    return absl::OkStatus();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Writes a copy of the object without its rescale, so that the decoder's
// modality values are the stored values: DCMTK holds rescaled values as
// integers, which would cut a PET slope of 0.0003 to nothing. The rescale is
// applied here, per frame, in double precision.
absl::Status WriteStoredValuesCopy(const std::string& source, const std::string& target) {
  DcmFileFormat file;
  if (file.loadFile(source.c_str(), EXS_Unknown, EGL_noChange, 4096, ERM_fileOnly).bad()) {
    return absl::InvalidArgumentError("not a readable DICOM file");
  }
  DcmDataset* ds = file.getDataset();
  for (const DcmTagKey& tag : {DCM_RescaleSlope, DCM_RescaleIntercept, DCM_RescaleType}) delete ds->remove(tag);
  for (const DcmTagKey& groups : {DCM_SharedFunctionalGroupsSequence, DCM_PerFrameFunctionalGroupsSequence}) {
    DcmSequenceOfItems* seq = nullptr;
    if (ds->findAndGetSequence(groups, seq).bad() || seq == nullptr) continue;
    for (unsigned long i = 0; i < seq->card(); ++i)
      delete seq->getItem(i)->remove(DCM_PixelValueTransformationSequence);
  }
  const E_TransferSyntax xfer = ds->getOriginalXfer();
  const OFCondition cond = file.saveFile(target.c_str(), xfer);
  if (cond.bad()) return absl::UnavailableError(std::string("writing a scratch copy: ") + cond.text());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Volume>> ReadUnguarded(const std::vector<std::string>& paths, const VolumeOptions& options,
                                                  SeriesReadStats& stats) {
  ASSIGN_OR_RETURN(SeriesRecords series, ReadRecords(paths));
  std::vector<SliceGeometry> geometry;
  geometry.reserve(series.frames.size());
  for (const FrameRecord& r : series.frames) geometry.push_back(r.geometry);
  ASSIGN_OR_RETURN(std::vector<StackPlan> plans, PlanVolumes(geometry, options));

  std::vector<double> suv(series.frames.size(), 1.0);
  if (series.modality == "PT") {
    std::vector<PetAttributes> pet;
    pet.reserve(series.frames.size());
    for (const FrameRecord& r : series.frames) pet.push_back(r.pet);
    ASSIGN_OR_RETURN(suv, SuvScaleFactors(pet));
  }

  // Where each frame goes: plan and position in its source order.
  std::vector<std::pair<int, size_t>> where(series.frames.size(), {-1, 0});
  std::vector<std::vector<float>> buffers(plans.size());
  for (size_t p = 0; p < plans.size(); ++p) {
    for (size_t z = 0; z < plans[p].order.size(); ++z) where[plans[p].order[z]] = {static_cast<int>(p), z};
    buffers[p].resize(plans[p].order.size() * size_t{plans[p].rows} * plans[p].columns);
  }
  std::vector<std::vector<size_t>> frames_of(series.objects.size());
  for (size_t i = 0; i < series.frames.size(); ++i) frames_of[series.frames[i].object].push_back(i);

  ScratchDir scratch;
  RegisterDecoders();
  for (size_t o = 0; o < series.objects.size(); ++o) {
    const ObjectInfo& object = series.objects[o];
    DecodeOptions decode;
    decode.apply_voi = false;
    decode.modality_values = true;
    decode.max_frames = object.frames;
    decode.max_total_pixels = std::max<uint64_t>(options.max_voxels, 1);
    decode.decoder = options.decoder;
    std::string path = object.path;
    const auto decode_start = std::chrono::steady_clock::now();
    if (!object.exact_in_decoder) {
      if (scratch.path().empty()) RETURN_IF_ERROR(scratch.Create(options.scratch_dir));
      path = (fs::path(scratch.path()) / ("object-" + std::to_string(o) + ".dcm")).string();
      if (absl::Status s = WriteStoredValuesCopy(object.path, path); !s.ok()) {
        if (s.code() == absl::StatusCode::kInvalidArgument)
          return Unreadable(o, series.objects.size(), std::string(s.message()));
        return s;
      }
    }
    absl::StatusOr<DecodedImage> image = DecodeImageFile(path, decode);
    if (path != object.path) {
      std::error_code ec;
      fs::remove(path, ec);
    }
    stats.decode_ms +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - decode_start).count();
    if (!image.ok()) {
      if (image.status().code() == absl::StatusCode::kInvalidArgument ||
          image.status().code() == absl::StatusCode::kUnimplemented) {
        return VolumeRefusal("undecodable", "object " + std::to_string(o + 1) + " of " +
                                                std::to_string(series.objects.size()) +
                                                " could not be decoded: " + std::string(image.status().message()));
      }
      return image.status();
    }
    if (image->frames.size() < object.frames) {
      return VolumeRefusal("undecodable", "object " + std::to_string(o + 1) + " decoded to fewer frames than it has");
    }
    for (size_t i : frames_of[o]) {
      const FrameRecord& r = series.frames[i];
      const auto [p, z] = where[i];
      if (p < 0) continue;
      const DecodedFrame& frame = image->frames[r.frame_index];
      const StackPlan& plan = plans[static_cast<size_t>(p)];
      const size_t pixels = size_t{plan.rows} * plan.columns;
      if (frame.rows != plan.rows || frame.columns != plan.columns || frame.values.size() != pixels) {
        return VolumeRefusal("undecodable",
                             "object " + std::to_string(o + 1) + " decoded to another size than its Rows and Columns");
      }
      const double slope = object.exact_in_decoder ? 1.0 : r.slope;
      const double intercept = object.exact_in_decoder ? 0.0 : r.intercept;
      const double scale = suv[i];
      float* out = buffers[static_cast<size_t>(p)].data() + z * pixels;
      for (size_t k = 0; k < pixels; ++k) {
        out[k] = static_cast<float>((frame.values[k] * slope + intercept) * scale);
      }
    }
  }

  std::vector<Volume> volumes;
  for (size_t p = 0; p < plans.size(); ++p) {
    const StackPlan& plan = plans[p];
    Volume v;
    v.depth = plan.depth;
    v.rows = plan.rows;
    v.columns = plan.columns;
    v.origin = plan.origin;
    v.spacing_mm = plan.spacing_mm;
    v.row_direction = plan.row_direction;
    v.column_direction = plan.column_direction;
    v.normal = plan.normal;
    v.modality = series.modality;
    v.units = series.modality == "CT" ? "HU" : series.modality == "PT" ? "SUVbw" : "";
    v.stack_label = plan.label;
    v.resampled = plan.resample;
    const size_t pixels = size_t{plan.rows} * plan.columns;
    if (plan.resample) {
      v.voxels = ResampleAlongZ(buffers[p], plan.offsets_mm, pixels, plan.depth, plan.spacing_mm[0]);
      for (size_t i : plan.order) {
        const SliceGeometry& g = series.frames[i].geometry;
        v.source_stack.slices.push_back({g.sop_instance_uid, g.frame_number, false});
      }
      v.source_stack.offsets_mm = plan.offsets_mm;
      v.source_stack.voxels = std::move(buffers[p]);
      const double tol = std::max(options.slice_tolerance_mm, options.slice_tolerance * plan.spacing_mm[0]);
      const std::vector<uint32_t> nearest = SourceSliceOfUniform(v);
      for (uint32_t k = 0; k < plan.depth; ++k) {
        const double z = k * plan.spacing_mm[0];
        SliceSource source = v.source_stack.slices[nearest[k]];
        source.interpolated = std::abs(plan.offsets_mm[nearest[k]] - z) > tol;
        v.sources.push_back(source);
      }
    } else {
      v.voxels = std::move(buffers[p]);
      for (size_t i : plan.order) {
        const SliceGeometry& g = series.frames[i].geometry;
        v.sources.push_back({g.sop_instance_uid, g.frame_number, false});
      }
    }
    volumes.push_back(std::move(v));
  }
  return volumes;
}

}  // namespace

absl::StatusOr<std::vector<SliceGeometry>> ReadSeriesGeometry(const std::vector<std::string>& paths) {
  try {
    ASSIGN_OR_RETURN(SeriesRecords series, ReadRecords(paths));
    std::vector<SliceGeometry> out;
    for (FrameRecord& r : series.frames) out.push_back(std::move(r.geometry));
    return out;
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while reading the series");
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("reading the series failed: ") + e.what());
  }
}

absl::StatusOr<std::vector<Volume>> ReadSeriesVolumes(const std::vector<std::string>& paths,
                                                      const VolumeOptions& options, SeriesReadStats* stats) {
  SeriesReadStats local;
  if (stats == nullptr) stats = &local;
  *stats = {};
  try {
    return ReadUnguarded(paths, options, *stats);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while reading the series");
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("reading the series failed: ") + e.what());
  }
}

}  // namespace secondread::scp
