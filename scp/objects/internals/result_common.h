// Pieces shared by the result writers (structured_report.cc,
// secondary_capture.cc): loading the source instance, copying the modules
// that put a result into the source study, the SOP Common / Series /
// Equipment attributes every result carries, and Part 10 serialisation.
// Internal: DCMTK types appear here and nowhere in the public headers.
#pragma once

#include <memory>
#include <cstdint>
#include <string>
#include <vector>
#include <string_view>

#include "common/status.h"
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcitem.h"
#include "dcmtk/ofstd/ofcond.h"
#include "scp/objects/result_objects.h"

namespace secondread::scp::internals {

// Maps a failed DCMTK condition to absl::StatusCode::kInternal with `what`
// as context; OK for a good condition.
absl::Status FromCondition(const OFCondition& cond, std::string_view what);

// Writes a text value (all values, backslash-separated) into `target`.
absl::Status Put(DcmItem& target, const DcmTagKey& tag, const std::string& value);

// Reads a spool file. With with_pixel_data false, large values (the frames)
// are not read into memory unless accessed, which is all an SR needs.
// NOT_FOUND when the file is missing or unreadable, INVALID_ARGUMENT when it
// is not DICOM.
absl::StatusOr<std::unique_ptr<DcmFileFormat>> LoadSource(const std::string& path, bool with_pixel_data);

// Copies Specific Character Set and the Patient, General Study and Patient
// Study modules from `source` into `target`, values as-is. Type 2 attributes
// are written empty when the source lacks them. INVALID_ARGUMENT when the
// source has no Study Instance UID.
absl::Status CopyPatientAndStudy(DcmItem& source, DcmItem& target);

// Writes SOP Common (SOP Class/Instance UID, Instance Creation Date/Time,
// Contributing Equipment Sequence with purpose (DCM, 109102, "Processing
// Equipment")), General Series (Modality, Series Instance UID, Series Number,
// Series Description truncated to 64 characters), General Equipment
// (Manufacturer, Manufacturer's Model Name = model name, Software Versions =
// the node's version), Content Date/Time and Instance Number. Existing values
// are replaced. INVALID_ARGUMENT when a required identity field is empty.
absl::Status AddResultCommon(DcmItem& target, const AlgorithmInfo& algorithm, const ResultIdentity& identity,
                             const ContentTime& when, const std::string& sop_class_uid,
                             const std::string& modality, const std::string& series_description);

// What a rendered Secondary Capture of ours ends with: Lossy Image
// Compression "01" kept from a lossy source, the Source Image Sequence (the
// source instance, its frame when frame > 0, purpose 121322), SC Equipment
// (WSD) and SC Image dates, and 8-bit RGB Image Pixel of rows x columns from
// `rgb`.
absl::Status AddRenderedCapture(DcmItem& target, DcmItem& source, const std::string& source_class,
                                const std::string& source_instance, uint32_t frame, const ContentTime& when,
                                uint32_t rows, uint32_t columns, const std::vector<uint8_t>& rgb);

// The complete Part 10 file in Explicit VR Little Endian. The File Meta
// Information is rebuilt from the dataset, so nothing of the source's meta
// header (transfer syntax, source AE) survives.
absl::StatusOr<std::string> SerializePart10(DcmFileFormat& file);

// Cuts a value to at most max_chars bytes without splitting a UTF-8 sequence
// (LO is 64 characters; the node writes ASCII or UTF-8).
std::string TruncateValue(const std::string& value, size_t max_chars);

// "AI RESULT (<model>) - FOR REVIEW, NOT A DIAGNOSIS" within the 64-character
// LO limit: the model name gives way, the disclaimer never does.
std::string ResultSeriesDescription(const std::string& model_name);

// A source's Body Part Examined as a valid CS value: trimmed and upper-cased;
// empty when nothing valid remains (characters outside A-Z, 0-9, space and
// underscore, or over 16 characters).
std::string NormalizedBodyPart(std::string_view body_part);

// Whether a normalised Body Part Examined (PS3.16 Annex L) names a paired
// structure, for which Laterality must be present even when unknown.
bool IsPairedBodyPart(std::string_view body_part);

}  // namespace secondread::scp::internals
