// The output resampler (cpu/lanczos_kernel.cpp), exposed to Python as `s2ccrop._C.lanczos_u8`.
#pragma once

#include <cstdint>

namespace s2ccrop {

// Part of an image of `width` x `height` pixels of `channels` (1 or 3) interleaved 8-bit channels: the
// `held_w` x `held_h` pixels from (x, y), row by row at `data`.
struct Pixels {
  const uint8_t* data;
  int width, height, channels;
  int x, y, held_w, held_h;
};

// Pillow's Lanczos resize of `box` (x1, y1, x2, y2 in pixels of the whole image; inside it) to `out_w` x
// `out_h` pixels at `dst`, pixel for pixel; `vertical_first_rule`: the pass order of Pillow 13 and later
// (earlier: horizontal first). `in` must hold every pixel the resize reads (std::out_of_range if not:
// the box, widened by the filter's reach). Throws std::bad_alloc when its buffers cannot be had.
void lanczos_resize(const Pixels& in, const float box[4], int out_w, int out_h, bool vertical_first_rule,
                    uint8_t* dst);

}  // namespace s2ccrop
