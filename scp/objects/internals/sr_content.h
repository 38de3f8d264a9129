// Building a DCMTK SR content tree one item at a time, shared by the SR
// writers (structured_report.cc, objects/volumetric_report.cc). Internal:
// DCMTK types appear here and nowhere in the public headers.
#pragma once

#include <functional>
#include <string>

#include "common/status.h"
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmsr/codes/dcm.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "scp/objects/derived_uid.h"
#include "scp/objects/internals/result_common.h"
#include "scp/objects/result_objects.h"

namespace secondread::scp::internals {

// Builds the content tree depth-first: Open() descends into a new child,
// Close() returns to its parent, Leaf() adds a child and stays where it was.
// Every DCMTK refusal (a relationship the IOD does not allow, an invalid
// value) becomes a Status instead of a silently missing item.
class ContentBuilder {
 public:
  using Setter = std::function<OFCondition(DSRContentItem&)>;

  explicit ContentBuilder(DSRDocumentTree& tree) : tree_(tree) {}

  absl::Status Root(const DSRCodedEntryValue& name, const std::string& template_id) {
    if (tree_.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container) == 0) {
      return absl::InternalError("SR: cannot add root container");
    }
    RETURN_IF_ERROR(FromCondition(tree_.getCurrentContentItem().setConceptName(name), "SR: root concept name"));
    return FromCondition(tree_.getCurrentContentItem().setTemplateIdentification(template_id, "DCMR"),
                         "SR: root template");
  }

  absl::Status Open(DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType type, const DSRCodedEntryValue* name,
                    const Setter& set = nullptr) {
    if (tree_.addContentItem(rel, type, DSRTypes::AM_belowCurrent) == 0) {
      return absl::InternalError(std::string("SR: DCMTK refused a ") + DSRTypes::valueTypeToDefinedTerm(type) +
                                 " item with relationship " + DSRTypes::relationshipTypeToDefinedTerm(rel) +
                                 (name ? " (" + std::string(name->getCodeMeaning().c_str()) + ")" : ""));
    }
    DSRContentItem& item = tree_.getCurrentContentItem();
    if (name != nullptr) RETURN_IF_ERROR(FromCondition(item.setConceptName(*name), "SR: concept name"));
    if (set) {
      RETURN_IF_ERROR(FromCondition(
          set(item), std::string("SR: value of ") + (name ? name->getCodeMeaning().c_str() : "item")));
    }
    return absl::OkStatus();
  }

  absl::Status Close() {
    if (tree_.goUp() == 0) return absl::InternalError("SR: tree cursor underflow");
    return absl::OkStatus();
  }

  absl::Status Leaf(DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType type, const DSRCodedEntryValue* name,
                    const Setter& set) {
    RETURN_IF_ERROR(Open(rel, type, name, set));
    return Close();
  }

  absl::Status Text(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue& name, const std::string& value) {
    // TEXT is UT; an empty value is not allowed, and a missing algorithm
    // parameter is better stated than omitted by a caller's mistake.
    const std::string text = value.empty() ? "(none)" : value;
    return Leaf(rel, DSRTypes::VT_Text, &name,
                [&text](DSRContentItem& item) { return item.setStringValue(text.c_str()); });
  }

  absl::Status Code(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue& name,
                    const DSRCodedEntryValue& value) {
    return Leaf(rel, DSRTypes::VT_Code, &name, [&value](DSRContentItem& item) { return item.setCodeValue(value); });
  }

  absl::Status UidRef(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue& name, const std::string& uid) {
    return Leaf(rel, DSRTypes::VT_UIDRef, &name,
                [&uid](DSRContentItem& item) { return item.setStringValue(uid.c_str()); });
  }

  absl::Status Image(DSRTypes::E_RelationshipType rel, const DSRCodedEntryValue* name, const SourceImage& source) {
    return Leaf(rel, DSRTypes::VT_Image, name, [&source](DSRContentItem& item) {
      DSRImageReferenceValue reference(source.sop_class_uid.c_str(), source.sop_instance_uid.c_str());
      if (source.frame > 0) reference.getFrameList().addItem(static_cast<Sint32>(source.frame));
      return item.setImageReference(reference);
    });
  }

 private:
  DSRDocumentTree& tree_;
};

// The opening every TID 1500 report of ours shares: the root container,
// its language, and the observer context naming the algorithm (a device,
// not a person, made the observations).
inline absl::Status OpenImagingMeasurementReport(ContentBuilder& b, const AlgorithmInfo& algorithm) {
  using T = DSRTypes;
  RETURN_IF_ERROR(b.Root(CODE_DCM_ImagingMeasurementReport, "1500"));
  RETURN_IF_ERROR(b.Code(T::RT_hasConceptMod, CODE_DCM_LanguageOfContentItemAndDescendants,
                         DSRCodedEntryValue("en-US", "RFC5646", "English (US)")));
  const std::string manufacturer = algorithm.manufacturer.empty() ? "secondread" : algorithm.manufacturer;
  RETURN_IF_ERROR(b.Code(T::RT_hasObsContext, CODE_DCM_ObserverType, CODE_DCM_Device));
  RETURN_IF_ERROR(b.UidRef(T::RT_hasObsContext, CODE_DCM_DeviceObserverUID,
                           DerivedUid({"device", manufacturer, algorithm.model_name, algorithm.model_version})));
  RETURN_IF_ERROR(b.Text(T::RT_hasObsContext, CODE_DCM_DeviceObserverName, algorithm.model_name));
  RETURN_IF_ERROR(b.Text(T::RT_hasObsContext, CODE_DCM_DeviceObserverManufacturer, manufacturer));
  return b.Text(T::RT_hasObsContext, CODE_DCM_DeviceObserverModelName, algorithm.model_name);
}

}  // namespace secondread::scp::internals
