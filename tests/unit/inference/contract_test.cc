// Proves, from the generated descriptors, that nothing in the inference
// contract can carry patient data. Every field of every message the services
// use is checked against names that suggest PHI, and every free-form field
// (string or bytes) must be on the reviewed list below with a reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <string>

#include "secondread/inference/v1/inference.grpc.pb.h"

namespace secondread::inference {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

// Substrings of field names that would mean patient or study identity.
const std::vector<std::string> kForbidden = {
    "patient", "birth", "dob", "accession", "institution", "uid", "mrn", "physician", "operator", "address",
    "phone", "sex", "gender", "study_id", "series_id", "instance", "date", "station", "referring", "person"};

// Free-form fields and why each cannot carry PHI by design.
const std::set<std::string> kReviewedText = {
    "secondread.inference.v1.Code.scheme",           // coding scheme designator (SCT, DCM)
    "secondread.inference.v1.Code.value",            // code value from a coding scheme
    "secondread.inference.v1.Code.meaning",          // the code's standard meaning
    "secondread.inference.v1.Image.data",            // pixel samples only
    "secondread.inference.v1.ModelVersionStatus.reason",  // worker-side load error
    "secondread.inference.v1.ModelSummary.name",     // model name
    "secondread.inference.v1.DescribeModelRequest.model_name",
    "secondread.inference.v1.Label.name",            // model label
    "secondread.inference.v1.InputSpec.scaling",     // minmax | range | window
    "secondread.inference.v1.InputSpec.pixel_values",  // display | modality, from the model manifest
    "secondread.inference.v1.Applicability.modalities",   // CR, DX, ...
    "secondread.inference.v1.Applicability.body_parts",   // CHEST, ...
    "secondread.inference.v1.Applicability.sop_classes",  // SOP Class (a kind of object), never an instance
    "secondread.inference.v1.ModelDescription.name",
    "secondread.inference.v1.ModelDescription.reason",
    "secondread.inference.v1.ModelDescription.description",   // from model.yaml
    "secondread.inference.v1.ModelDescription.intended_use",  // from model.yaml
    "secondread.inference.v1.ModelDescription.precision",
    "secondread.inference.v1.ModelDescription.devices",
    "secondread.inference.v1.LoadModelRequest.model_name",
    "secondread.inference.v1.UnloadModelRequest.model_name",
    "secondread.inference.v1.InferRequest.model_name",
    "secondread.inference.v1.InferRequest.job_token",  // opaque, minted by the node from its job id
    "secondread.inference.v1.LabelScore.label",
    "secondread.inference.v1.Heatmap.label",
    "secondread.inference.v1.ImageResult.model_name",
    "secondread.inference.v1.InferResponse.job_token",
    "secondread.inference.v1.InferResponse.model_name",
    "secondread.inference.v1.VolumeInputSpec.axes",           // a permutation of DHW, from the model manifest
    "secondread.inference.v1.VolumeInputSpec.interpolation",  // linear | nearest, from the model manifest
    "secondread.inference.v1.VolumeHeader.model_name",
    "secondread.inference.v1.VolumeHeader.job_token",  // opaque, minted by the node from its job id
    "secondread.inference.v1.VolumeChunk.data",        // voxel samples or output map bytes only
    "secondread.inference.v1.LabelSummary.label",      // model label
    "secondread.inference.v1.VolumeMap.label",         // model label
    "secondread.inference.v1.VolumeResultHeader.job_token",
    "secondread.inference.v1.VolumeResultHeader.model_name",
};

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

void Walk(const Descriptor* d, std::set<const Descriptor*>& seen) {
  if (!seen.insert(d).second) return;
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->message_type()) Walk(f->message_type(), seen);
  }
}

std::set<const Descriptor*> ContractMessages() {
  std::set<const Descriptor*> seen;
  for (const auto* service : {v1::Inference::service_full_name(), v1::ModelAdmin::service_full_name()}) {
    const auto* sd = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
    EXPECT_NE(sd, nullptr) << service;
    if (!sd) continue;
    for (int m = 0; m < sd->method_count(); ++m) {
      Walk(sd->method(m)->input_type(), seen);
      Walk(sd->method(m)->output_type(), seen);
    }
  }
  return seen;
}

TEST(ContractTest, NoFieldNameSuggestsPatientData) {
  auto messages = ContractMessages();
  ASSERT_GT(messages.size(), 15u);
  for (const Descriptor* d : messages) {
    for (int i = 0; i < d->field_count(); ++i) {
      const std::string name = Lower(d->field(i)->name());
      for (const auto& bad : kForbidden) {
        EXPECT_EQ(name.find(bad), std::string::npos) << d->field(i)->full_name() << " looks like it could carry PHI";
      }
    }
  }
}

TEST(ContractTest, EveryFreeFormFieldIsReviewed) {
  std::set<std::string> found;
  for (const Descriptor* d : ContractMessages()) {
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* f = d->field(i);
      if (f->type() == FieldDescriptor::TYPE_STRING || f->type() == FieldDescriptor::TYPE_BYTES) {
        found.insert(f->full_name());
        EXPECT_TRUE(kReviewedText.count(f->full_name()))
            << f->full_name() << " is free-form text the PHI review has not seen; add it to kReviewedText with a reason";
      }
    }
  }
  // A stale entry would make the list lie about what is reviewed.
  for (const auto& reviewed : kReviewedText) EXPECT_TRUE(found.count(reviewed)) << reviewed << " no longer exists";
}

TEST(ContractTest, TheForbiddenListCatchesARealPhiName) {
  // Guards the guard: the checks above must be able to fail.
  for (const char* phi : {"patient_name", "PatientID", "study_instance_uid", "accession_number", "institution_name",
                          "birth_date"}) {
    const std::string name = Lower(phi);
    bool caught = false;
    for (const auto& bad : kForbidden) caught = caught || name.find(bad) != std::string::npos;
    EXPECT_TRUE(caught) << phi;
  }
}

}  // namespace
}  // namespace secondread::inference
