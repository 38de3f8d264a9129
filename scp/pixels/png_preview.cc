#include "scp/pixels/png_preview.h"

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmimage/diregist.h"  // colour images
#include "dcmtk/dcmimage/dipipng.h"
#include "dcmtk/dcmimgle/dcmimage.h"

namespace secondread::scp {

absl::StatusOr<std::string> RenderPng(const std::string& path, uint32_t max_side) {
  try {
    DcmFileFormat file;
    if (file.loadFile(path.c_str()).bad()) return absl::NotFoundError("cannot read the image file");
    // CIF_MayDetachPixelData: the dataset is ours and not used afterwards.
    DicomImage image(&file, file.getDataset()->getOriginalXfer(), CIF_MayDetachPixelData, 0, 1);
    if (image.getStatus() != EIS_Normal) {
      return absl::InvalidArgumentError(std::string("cannot render the image: ") +
                                        DicomImage::getString(image.getStatus()));
    }
    if (image.isMonochrome() && image.getWindowCount() > 0) {
      image.setWindow(0);
    } else if (image.isMonochrome()) {
      image.setMinMaxWindow();
    }
    std::unique_ptr<DicomImage> scaled;
    DicomImage* out = &image;
    const unsigned long w = image.getWidth(), h = image.getHeight();
    if (max_side > 0 && (w > max_side || h > max_side)) {
      const bool wide = w >= h;
      scaled.reset(image.createScaledImage(wide ? max_side : 0UL, wide ? 0UL : max_side, 1 /* interpolate */, 1));
      if (!scaled || scaled->getStatus() != EIS_Normal) return absl::InternalError("cannot scale the image");
      out = scaled.get();
    }
    char* buffer = nullptr;
    size_t size = 0;
    FILE* stream = open_memstream(&buffer, &size);
    if (!stream) return absl::ResourceExhaustedError("cannot allocate the PNG buffer");
    DiPNGPlugin png;
    png.setInterlaceType(E_pngInterlaceNone);
    png.setMetainfoType(E_pngNoMetainfo);  // no text chunks: nothing of the object's attributes leaves in them
    const int ok = out->writePluginFormat(&png, stream, 0);
    std::fclose(stream);
    std::string bytes = (ok && buffer) ? std::string(buffer, size) : std::string();
    std::free(buffer);
    if (!ok || bytes.empty()) return absl::InternalError("cannot encode the PNG");
    return bytes;
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("rendering failed: ") + e.what());
  }
}

}  // namespace secondread::scp
