// The output resampler (cpu/lanczos_kernel.cpp), exposed to Python as `s2ccrop._C.lanczos_u8`.
#pragma once

#include <cstdint>

namespace s2ccrop {

// Pillow's Lanczos resize of `box` (x1, y1, x2, y2 in pixels of the source; inside it) of an `in_w` x
// `in_h` image of `ch` (1 or 3) interleaved 8-bit channels to `out_w` x `out_h` pixels at `dst`, pixel
// for pixel; `vertical_first_rule`: the pass order of Pillow 13 and later (earlier: horizontal first).
// Throws std::bad_alloc when its buffers cannot be had.
void lanczos_resize(const uint8_t* src, int in_w, int in_h, int ch, const float box[4], int out_w, int out_h,
                    bool vertical_first_rule, uint8_t* dst);

}  // namespace s2ccrop
