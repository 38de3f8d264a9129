#include "scp/objects/segmentation.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <utility>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcsequen.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmfg/fgderimg.h"
#include "dcmtk/dcmfg/fgfracon.h"
#include "dcmtk/dcmfg/fgpixmsr.h"
#include "dcmtk/dcmfg/fgplanor.h"
#include "dcmtk/dcmfg/fgplanpo.h"
#include "dcmtk/dcmseg/segdoc.h"
#include "dcmtk/dcmseg/segment.h"
#include "dcmtk/dcmsr/codes/dcm.h"
#include "scp/objects/internals/result_common.h"
#include "scp/pixels/series_reader.h"

namespace secondread::scp {
namespace {

using internals::FromCondition;

constexpr uint16_t kMaxFractional = 255;

// The shortest decimal text (at most 16 characters, DS) that reads back as
// exactly `value`, so a position copied from a source compares equal.
std::string DecimalString(double value) {
  if (value == 0) return "0";
  char buffer[40];
  std::string best;
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof buffer, "%.*g", precision, value);
    if (std::string(buffer).size() > 16) break;
    best = buffer;
    if (std::strtod(buffer, nullptr) == value) break;
  }
  return best;  // the closest that fits 16 characters
}

CodeSequenceMacro Code(const CodedConcept& c) { return CodeSequenceMacro(c.value, c.scheme, c.meaning); }

CodeSequenceMacro Code(const DSRBasicCodedEntry& c) {
  return CodeSequenceMacro(c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning);
}

struct SourceFrame {
  const SourceImage* image = nullptr;
  uint32_t frame_number = 0;
  Vec3 position{};
};

std::string FrameKey(const std::string& uid, uint32_t frame) { return uid + "/" + std::to_string(frame); }

absl::Status CheckResult(const Volume& volume, const SegmentationResult& result) {
  const size_t voxels = size_t{volume.depth} * volume.rows * volume.columns;
  if (volume.depth == 0 || voxels == 0) return absl::InvalidArgumentError("empty volume");
  if (volume.rows > 65535 || volume.columns > 65535) return absl::InvalidArgumentError("slice too large for DICOM");
  if (volume.sources.size() != volume.depth) {
    return absl::InvalidArgumentError("volume has " + std::to_string(volume.sources.size()) + " slice sources for " +
                                      std::to_string(volume.depth) + " slices");
  }
  if (!volume.slice_offsets_mm.empty() && volume.slice_offsets_mm.size() != volume.depth) {
    return absl::InvalidArgumentError("volume has " + std::to_string(volume.slice_offsets_mm.size()) +
                                      " slice offsets for " + std::to_string(volume.depth) + " slices");
  }
  if (result.segments.empty() || result.segments.size() > 255) {
    return absl::InvalidArgumentError("a segmentation needs 1 to 255 segments");
  }
  for (const SegmentDefinition& s : result.segments) {
    if (s.label.empty() || s.category.value.empty() || s.category.scheme.empty() || s.category.meaning.empty() ||
        s.type.value.empty() || s.type.scheme.empty() || s.type.meaning.empty()) {
      return absl::InvalidArgumentError("every segment needs a label, a category and a type");
    }
  }
  const bool binary = !result.label_map.empty();
  if (binary == !result.probabilities.empty()) {
    return absl::InvalidArgumentError("give either a label map or probability maps");
  }
  if (binary) {
    if (result.label_map.size() != voxels) return absl::InvalidArgumentError("label map does not match the volume");
    for (uint8_t v : result.label_map) {
      if (v > result.segments.size()) {
        return absl::InvalidArgumentError("label " + std::to_string(v) + " has no segment");
      }
    }
  } else {
    if (result.probabilities.size() != result.segments.size()) {
      return absl::InvalidArgumentError("one probability map per segment");
    }
    for (const auto& map : result.probabilities) {
      if (map.size() != voxels) return absl::InvalidArgumentError("probability map does not match the volume");
      for (float p : map) {
        if (!(p >= 0.0f && p <= 1.0f)) return absl::InvalidArgumentError("probability outside 0..1");
      }
    }
  }
  return absl::OkStatus();
}

// Each z index's source frame, with the position the source file gives it.
// The positions are checked against the volume's geometry: a volume that does
// not describe these files would put the segmentation in the wrong place.
absl::StatusOr<std::vector<SourceFrame>> ResolveSources(const Volume& volume, const std::vector<SourceImage>& series) {
  std::map<std::string, const SourceImage*> by_uid;
  std::vector<std::string> paths;
  for (const SourceImage& image : series) {
    if (image.sop_instance_uid.empty() || image.sop_class_uid.empty() || image.series_instance_uid.empty()) {
      return absl::InvalidArgumentError("series image without SOP Class, SOP Instance or Series Instance UID");
    }
    if (by_uid.emplace(image.sop_instance_uid, &image).second) paths.push_back(image.path);
  }
  ASSIGN_OR_RETURN(std::vector<SliceGeometry> geometry, ReadSeriesGeometry(paths));
  std::map<std::string, const SliceGeometry*> by_frame;
  for (const SliceGeometry& g : geometry) {
    // Without a Frame of Reference the positions place nothing: a viewer
    // could not put the segmentation over the images.
    if (g.frame_of_reference_uid.empty()) {
      return absl::InvalidArgumentError("the series has no Frame of Reference UID");
    }
    by_frame[FrameKey(g.sop_instance_uid, g.frame_number)] = &g;
  }

  const double tolerance = std::max(0.05 * volume.spacing_mm[0], 0.05);
  std::vector<SourceFrame> out(volume.depth);
  for (uint32_t k = 0; k < volume.depth; ++k) {
    const SliceSource& source = volume.sources[k];
    auto image = by_uid.find(source.sop_instance_uid);
    if (image == by_uid.end()) {
      return absl::InvalidArgumentError("slice " + std::to_string(k) + "'s source is not in the series");
    }
    auto g = by_frame.find(FrameKey(source.sop_instance_uid, source.frame_number));
    if (g == by_frame.end() || !g->second->has_position) {
      return absl::InvalidArgumentError("slice " + std::to_string(k) + "'s source frame has no position");
    }
    if (g->second->rows != volume.rows || g->second->columns != volume.columns) {
      return absl::InvalidArgumentError("slice " + std::to_string(k) + "'s source has another size");
    }
    const Vec3 expected = SlicePosition(volume, k);
    for (int a = 0; a < 3; ++a) {
      if (std::abs(g->second->position[a] - expected[a]) > tolerance) {
        return absl::InvalidArgumentError("slice " + std::to_string(k) +
                                          "'s source position disagrees with the volume's geometry");
      }
    }
    out[k] = {image->second, source.frame_number, g->second->position};
  }
  return out;
}

// Referenced Series Sequence (Common Instance Reference): every source
// instance the frames derive from, in the order first referenced.
absl::Status AddReferencedSeries(DcmItem& dataset, const std::vector<SourceFrame>& frames) {
  delete dataset.remove(DCM_ReferencedSeriesSequence);
  std::vector<std::string> series_order;
  std::map<std::string, std::vector<const SourceImage*>> instances;
  std::map<std::string, bool> seen;
  for (const SourceFrame& f : frames) {
    if (seen[f.image->sop_instance_uid]) continue;
    seen[f.image->sop_instance_uid] = true;
    auto& list = instances[f.image->series_instance_uid];
    if (list.empty()) series_order.push_back(f.image->series_instance_uid);
    list.push_back(f.image);
  }
  for (size_t s = 0; s < series_order.size(); ++s) {
    DcmItem* series = nullptr;
    RETURN_IF_ERROR(FromCondition(
        dataset.findOrCreateSequenceItem(DCM_ReferencedSeriesSequence, series, static_cast<signed long>(s)),
        "creating Referenced Series Sequence"));
    RETURN_IF_ERROR(FromCondition(series->putAndInsertOFStringArray(DCM_SeriesInstanceUID, series_order[s].c_str()),
                                  "writing Series Instance UID"));
    const auto& list = instances[series_order[s]];
    for (size_t i = 0; i < list.size(); ++i) {
      DcmItem* instance = nullptr;
      RETURN_IF_ERROR(FromCondition(
          series->findOrCreateSequenceItem(DCM_ReferencedInstanceSequence, instance, static_cast<signed long>(i)),
          "creating Referenced Instance Sequence"));
      RETURN_IF_ERROR(
          FromCondition(instance->putAndInsertOFStringArray(DCM_ReferencedSOPClassUID, list[i]->sop_class_uid.c_str()),
                        "writing Referenced SOP Class UID"));
      RETURN_IF_ERROR(FromCondition(
          instance->putAndInsertOFStringArray(DCM_ReferencedSOPInstanceUID, list[i]->sop_instance_uid.c_str()),
          "writing Referenced SOP Instance UID"));
    }
  }
  return absl::OkStatus();
}

// Calls add(segment, k, pixels) for each frame to write, segment by segment
// and slice by slice along the normal: the slices holding a pixel of the
// segment, or the first slice, empty, for a segment without any. Frames are
// made one at a time so that only one slice of pixels is held here.
template <typename Add>
absl::Status ForEachFrame(const Volume& volume, const SegmentationResult& result, Add add) {
  const size_t slice = size_t{volume.rows} * volume.columns;
  const bool binary = !result.label_map.empty();
  std::vector<uint8_t> pixels(slice);
  for (size_t s = 0; s < result.segments.size(); ++s) {
    const uint16_t number = static_cast<uint16_t>(s + 1);
    bool any = false;
    for (uint32_t k = 0; k < volume.depth; ++k) {
      bool nonzero = false;
      for (size_t p = 0; p < slice; ++p) {
        const size_t v = size_t{k} * slice + p;
        const uint8_t value = binary ? (result.label_map[v] == number ? 1 : 0)
                                     : static_cast<uint8_t>(std::lround(result.probabilities[s][v] * kMaxFractional));
        pixels[p] = value;
        nonzero = nonzero || value != 0;
      }
      if (nonzero) {
        RETURN_IF_ERROR(add(number, k, pixels));
        any = true;
      }
    }
    if (!any) {
      std::fill(pixels.begin(), pixels.end(), 0);
      RETURN_IF_ERROR(add(number, 0, pixels));
    }
  }
  return absl::OkStatus();
}

// Appends a BINARY frame to Pixel Data as PS3.5 8.1.1 wants it: the frames'
// bits one after another with no padding between frames, the first pixel in
// the least significant bit. DCMTK 3.6.7 shifts frames after the first to a
// bit position that is not byte-aligned and gets some sizes wrong (13 x 11
// loses and moves pixels from the second frame on), so the writer replaces
// its Pixel Data with this.
void AppendBits(const std::vector<uint8_t>& pixels, std::vector<uint8_t>& packed, size_t& bit) {
  packed.resize((bit + pixels.size() + 7) / 8, 0);
  for (uint8_t v : pixels) {
    if (v != 0) packed[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
    ++bit;
  }
}

}  // namespace

SegmentDefinition AbnormalStructureSegment(const std::string& label, const CodedConcept& type) {
  return {label, segmentation_codes::kMorphologicallyAbnormalStructure, type};
}

std::string ReadSegUid(const ReadIdentity& read, const Volume& volume) {
  std::vector<std::string> names;
  names.reserve(volume.sources.size());
  for (const SliceSource& s : volume.sources) names.push_back(FrameKey(s.sop_instance_uid, s.frame_number));
  std::sort(names.begin(), names.end());
  std::vector<std::string_view> parts = {"read-seg", read.study_uid, read.rule,
                                         read.model, read.version,   read.instance_uid};
  for (const std::string& name : names) parts.push_back(name);
  return DerivedUid(parts);
}

absl::StatusOr<BuiltObject> BuildSegmentation(const Volume& volume, const std::vector<SourceImage>& series,
                                              const SegmentationResult& result, const AlgorithmInfo& algorithm,
                                              const ResultIdentity& identity, const ContentTime& when) {
  bool interpolated = volume.resampled;
  for (const SliceSource& s : volume.sources) interpolated = interpolated || s.interpolated;
  if (interpolated) {
    return VolumeRefusal("resampled_volume",
                         "A segmentation must lie on the source slices; this volume was resampled, so the result "
                         "has to be resampled back onto the source grid before a segmentation can be written.");
  }
  RETURN_IF_ERROR(CheckResult(volume, result));
  ASSIGN_OR_RETURN(std::vector<SourceFrame> sources, ResolveSources(volume, series));
  ASSIGN_OR_RETURN(std::unique_ptr<DcmFileFormat> source_file,
                   internals::LoadSource(sources[0].image->path, /*with_pixel_data=*/false));
  DcmDataset* source = source_file->getDataset();

  const bool binary = !result.label_map.empty();
  const uint16_t rows = static_cast<uint16_t>(volume.rows);
  const uint16_t columns = static_cast<uint16_t>(volume.columns);
  const std::string manufacturer = algorithm.manufacturer.empty() ? "secondread" : algorithm.manufacturer;
  const std::string model = algorithm.model_name.empty() ? "unknown" : algorithm.model_name;
  const std::string software = algorithm.software_version.empty() ? "unknown" : algorithm.software_version;
  // Enhanced General Equipment wants a Device Serial Number; the "device" that
  // made the object is the model at its version.
  const std::string serial =
      internals::TruncateValue(model + (algorithm.model_version.empty() ? "" : " " + algorithm.model_version), 64);
  IODGeneralEquipmentModule::EquipmentInfo equipment(internals::TruncateValue(manufacturer, 64),
                                                     internals::TruncateValue(model, 64), serial,
                                                     internals::TruncateValue(software, 64));
  std::string description = "AI result, not a diagnosis: " + model;
  if (!algorithm.model_version.empty()) description += " version " + algorithm.model_version;
  ContentIdentificationMacro content(std::to_string(identity.instance_number), "AI_SEGMENTATION",
                                     internals::TruncateValue(description, 64), "");

  DcmSegmentation* raw = nullptr;
  OFCondition cond = binary ? DcmSegmentation::createBinarySegmentation(raw, rows, columns, equipment, content)
                            : DcmSegmentation::createFractionalSegmentation(
                                  raw, rows, columns, DcmSegTypes::SFT_PROBABILITY, kMaxFractional, equipment, content);
  RETURN_IF_ERROR(FromCondition(cond, "creating segmentation"));
  std::unique_ptr<DcmSegmentation> seg(raw);
  // Patient, Study and Frame of Reference from the source (the FoR is what
  // places the frames in the source's space); AddResultCommon below rewrites
  // the modules the node owns.
  RETURN_IF_ERROR(FromCondition(seg->importFromSourceImage(*source, OFTrue), "importing from the source"));
  RETURN_IF_ERROR(
      FromCondition(seg->getSegmentationSeriesModule().setSeriesNumber(std::to_string(identity.series_number).c_str()),
                    "Series Number"));

  for (const SegmentDefinition& def : result.segments) {
    DcmSegment* segment = nullptr;
    RETURN_IF_ERROR(FromCondition(
        DcmSegment::create(segment, internals::TruncateValue(def.label, 64).c_str(), Code(def.category), Code(def.type),
                           DcmSegTypes::SAT_AUTOMATIC, internals::TruncateValue(model, 64).c_str()),
        "creating segment " + def.label));
    std::unique_ptr<DcmSegment> owned(segment);
    // Segmentation Algorithm Identification: the family (CID 7162) and the
    // model's name and version, so a viewer can tell which model drew it.
    AlgorithmIdentificationMacro identification;
    const DSRBasicCodedEntry ai = CODE_DCM_ArtificialIntelligence;
    identification.getAlgorithmFamilyCode().set(ai.CodeValue, ai.CodingSchemeDesignator, ai.CodeMeaning);
    RETURN_IF_ERROR(
        FromCondition(identification.setAlgorithmName(internals::TruncateValue(model, 64).c_str()), "Algorithm Name"));
    RETURN_IF_ERROR(FromCondition(
        identification.setAlgorithmVersion(
            internals::TruncateValue(algorithm.model_version.empty() ? "unknown" : algorithm.model_version, 64)
                .c_str()),
        "Algorithm Version"));
    if (!algorithm.parameters.empty()) {
      RETURN_IF_ERROR(
          FromCondition(identification.setAlgorithmParameters(algorithm.parameters.c_str()), "Algorithm Parameters"));
    }
    RETURN_IF_ERROR(FromCondition(segment->setSegmentationAlgorithmIdentification(identification),
                                  "Segmentation Algorithm Identification"));
    Uint16 number = 0;
    RETURN_IF_ERROR(FromCondition(seg->addSegment(segment, number), "adding segment " + def.label));
    owned.release();
  }

  // Shared: one orientation and pixel measures for the whole volume.
  FGPixelMeasures measures;
  RETURN_IF_ERROR(
      FromCondition(measures.setPixelSpacing(
                        (DecimalString(volume.spacing_mm[1]) + "\\" + DecimalString(volume.spacing_mm[2])).c_str()),
                    "Pixel Spacing"));
  // A SEG voxel is as thick as the slice spacing: it covers its slice up to
  // the next one, whatever the source's nominal thickness. Unevenly spaced
  // source slices have no one spacing: their thickness is the uniform grid's
  // the model read, Spacing Between Slices (optional) is left out, and each
  // frame's own Plane Position places it.
  RETURN_IF_ERROR(
      FromCondition(measures.setSliceThickness(DecimalString(volume.spacing_mm[0]).c_str()), "Slice Thickness"));
  if (volume.slice_offsets_mm.empty()) {
    RETURN_IF_ERROR(FromCondition(measures.setSpacingBetweenSlices(DecimalString(volume.spacing_mm[0]).c_str()),
                                  "Spacing Between Slices"));
  }
  RETURN_IF_ERROR(FromCondition(seg->addForAllFrames(measures), "adding Pixel Measures"));
  std::unique_ptr<FGPlaneOrientationPatient> orientation(FGPlaneOrientationPatient::createMinimal(
      DecimalString(volume.row_direction[0]).c_str(), DecimalString(volume.row_direction[1]).c_str(),
      DecimalString(volume.row_direction[2]).c_str(), DecimalString(volume.column_direction[0]).c_str(),
      DecimalString(volume.column_direction[1]).c_str(), DecimalString(volume.column_direction[2]).c_str()));
  if (!orientation) return absl::InternalError("creating Plane Orientation (Patient)");
  RETURN_IF_ERROR(FromCondition(seg->addForAllFrames(*orientation), "adding Plane Orientation (Patient)"));

  // Dimensions as dcmqi writes them: segment, then position along the normal.
  const std::string organization = DerivedUid({"seg-dimensions", identity.sop_instance_uid});
  IODMultiframeDimensionModule& dimensions = seg->getDimensions();
  RETURN_IF_ERROR(
      FromCondition(dimensions.addDimensionIndex(DCM_ReferencedSegmentNumber, organization.c_str(),
                                                 DCM_SegmentIdentificationSequence, "ReferencedSegmentNumber"),
                    "adding segment dimension"));
  RETURN_IF_ERROR(FromCondition(dimensions.addDimensionIndex(DCM_ImagePositionPatient, organization.c_str(),
                                                             DCM_PlanePositionSequence, "ImagePositionPatient"),
                                "adding position dimension"));

  const CodeSequenceMacro derivation = Code(CODE_DCM_Segmentation_113076);
  const CodeSequenceMacro purpose = Code(CODE_DCM_SourceImageForImageProcessingOperation);
  std::vector<SourceFrame> written;
  std::vector<uint8_t> packed;  // BINARY Pixel Data
  size_t packed_bits = 0;
  uint64_t pixel_bytes = 0;
  RETURN_IF_ERROR(
      ForEachFrame(volume, result, [&](uint16_t segment, uint32_t k, std::vector<uint8_t>& pixels) -> absl::Status {
        // Pixel Data has a 32-bit length.
        pixel_bytes += binary ? pixels.size() / 8 + 1 : pixels.size();
        if (pixel_bytes >= 0xFFFFFFF0ull) return absl::InvalidArgumentError("segmentation too large for one object");
        const SourceFrame& src = sources[k];
        std::unique_ptr<FGPlanePosPatient> position(FGPlanePosPatient::createMinimal(
            DecimalString(src.position[0]).c_str(), DecimalString(src.position[1]).c_str(),
            DecimalString(src.position[2]).c_str()));
        if (!position) return absl::InternalError("creating Plane Position (Patient)");
        ImageSOPInstanceReferenceMacro* reference = nullptr;
        RETURN_IF_ERROR(
            FromCondition(ImageSOPInstanceReferenceMacro::create(src.image->sop_class_uid.c_str(),
                                                                 src.image->sop_instance_uid.c_str(), reference),
                          "referencing the source image"));
        std::unique_ptr<ImageSOPInstanceReferenceMacro> owned_reference(reference);
        // DCMTK's create() taking frame numbers accepts only the SOP classes it
        // knows to be multi-frame; the number is added here for any source.
        if (src.frame_number > 0) {
          if (src.frame_number > 65535) return absl::InvalidArgumentError("source frame number too large");
          RETURN_IF_ERROR(FromCondition(reference->addReferencedFrameNumber(static_cast<Uint16>(src.frame_number)),
                                        "Referenced Frame Number"));
        }
        OFVector<ImageSOPInstanceReferenceMacro> references;
        references.push_back(*reference);
        std::unique_ptr<FGDerivationImage> derived(FGDerivationImage::createMinimal(
            references, "Segmentation by " + OFString(model.c_str()), derivation, purpose));
        if (!derived) return absl::InternalError("creating Derivation Image");
        FGFrameContent content_fg;
        RETURN_IF_ERROR(FromCondition(content_fg.setDimensionIndexValues(segment, 0), "segment index"));
        RETURN_IF_ERROR(FromCondition(content_fg.setDimensionIndexValues(k + 1, 1), "position index"));
        OFVector<FGBase*> per_frame;
        per_frame.push_back(position.get());
        per_frame.push_back(derived.get());
        per_frame.push_back(&content_fg);
        RETURN_IF_ERROR(FromCondition(seg->addFrame(pixels.data(), segment, per_frame), "adding a frame"));
        if (binary) AppendBits(pixels, packed, packed_bits);
        written.push_back(src);
        return absl::OkStatus();
      }));

  DcmFileFormat file;
  DcmDataset* dataset = file.getDataset();
  RETURN_IF_ERROR(FromCondition(seg->writeDataset(*dataset), "writing the segmentation"));
  RETURN_IF_ERROR(internals::CopyPatientAndStudy(*source, *dataset));
  RETURN_IF_ERROR(internals::AddResultCommon(*dataset, algorithm, identity, when, UID_SegmentationStorage, "SEG",
                                             internals::ResultSeriesDescription(model)));
  RETURN_IF_ERROR(AddReferencedSeries(*dataset, written));
  if (binary) {
    if (packed.size() % 2 != 0) packed.push_back(0);  // even length, padding at the end only
    delete dataset->remove(DCM_PixelData);
    RETURN_IF_ERROR(FromCondition(dataset->putAndInsertUint8Array(DCM_PixelData, packed.data(), packed.size()),
                                  "writing Pixel Data"));
  }
  ASSIGN_OR_RETURN(std::string part10, internals::SerializePart10(file));
  return BuiltObject{UID_SegmentationStorage, identity.sop_instance_uid, identity.series_instance_uid,
                     std::move(part10)};
}

}  // namespace secondread::scp
