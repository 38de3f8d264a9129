// A fixed 5x7 bitmap font for printable ASCII, used to burn text into the
// Secondary Capture. The node has no font or image library among its
// dependencies, and a result banner needs nothing more than this.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace secondread::scp::internals {

inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;
// One blank column between glyphs and two blank rows between lines.
inline constexpr int kGlyphAdvance = kGlyphWidth + 1;
inline constexpr int kLineAdvance = kGlyphHeight + 2;

struct Rgb {
  uint8_t r = 0;
  uint8_t g = 0;
  uint8_t b = 0;
};

// Whether the glyph cell of `c` is set at column x (0..4), row y (0..6).
// Characters outside printable ASCII render as '?'.
bool GlyphPixel(char c, int x, int y);

// Width in pixels of `text` drawn at `scale`, without the trailing gap.
int TextWidth(std::string_view text, int scale);

// Draws `text` with its top-left corner at (x, y) into an interleaved RGB
// image of width x height pixels, each glyph pixel a scale x scale block.
// Clips at the image edges.
void DrawText(std::vector<uint8_t>& rgb, int width, int height, int x, int y, std::string_view text, int scale,
              Rgb colour);

// Splits `text` into lines of at most max_chars characters, breaking at
// spaces where possible and inside a word only when it alone is too long.
std::vector<std::string> WrapText(std::string_view text, size_t max_chars);

}  // namespace secondread::scp::internals
