// Checks the unit tests of the object writers share: dciodvfy on a written
// file, and reading attribute values back with DCMTK.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcitem.h"

namespace secondread::test_support {

// dciodvfy (dicom3tools) checks the IOD, its modules and the SR templates it
// knows. Its error lines; warnings are allowed. The whole report goes to
// *all_output for the failure message.
inline std::vector<std::string> DciodvfyErrors(const std::string& path, std::string* all_output) {
  std::vector<std::string> errors;
  FILE* pipe = popen(("dciodvfy '" + path + "' 2>&1").c_str(), "r");
  if (pipe == nullptr) return {"cannot run dciodvfy"};
  char line[4096];
  while (fgets(line, sizeof line, pipe) != nullptr) {
    all_output->append(line);
    if (std::string(line).find("Error") != std::string::npos) errors.push_back(line);
  }
  const int rc = pclose(pipe);
  if (rc == -1 || (WIFEXITED(rc) && WEXITSTATUS(rc) == 127)) errors.push_back("dciodvfy not runnable");
  return errors;
}

// One value of an attribute (pos), as text; empty when absent.
inline std::string Get(DcmItem& item, const DcmTagKey& tag, unsigned long pos = 0) {
  OFString value;
  item.findAndGetOFString(tag, value, pos);
  return value.c_str();
}

// Every value of an attribute, backslash-separated; empty when absent.
inline std::string GetAll(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  item.findAndGetOFStringArray(tag, value);
  return value.c_str();
}

}  // namespace secondread::test_support
