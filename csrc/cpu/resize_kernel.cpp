// CPU kernel of s2ccrop::bilinear_u8: the model input's bilinear resize (s2ccrop/preprocess.py).
//
// Each output value is `a + t * (b - a)` for the two horizontal taps of a row, then the same between the
// two rows, every operation rounded on its own (the build passes -ffp-contract=off, so no multiply-add
// is fused): the same float32 bits on every CPU and thread count, and the same as the pure-PyTorch
// formula in preprocess.py, which does those operations one by one.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

namespace s2ccrop {
namespace {

at::Tensor bilinear_u8_cpu(const at::Tensor& pixels, const at::Tensor& rows, const at::Tensor& cols,
                           const at::Tensor& wy, const at::Tensor& wx) {
  TORCH_CHECK(pixels.dim() == 3 && pixels.size(2) == 3 && pixels.scalar_type() == at::kByte,
              "bilinear_u8: pixels must be uint8 [H, W, 3]");
  TORCH_CHECK(rows.dim() == 2 && rows.size(0) == 2 && cols.dim() == 2 && cols.size(0) == 2 &&
                  rows.scalar_type() == at::kLong && cols.scalar_type() == at::kLong,
              "bilinear_u8: rows and cols must be int64 [2, n] (first and second taps)");
  TORCH_CHECK(wy.dim() == 1 && wx.dim() == 1 && wy.size(0) == rows.size(1) && wx.size(0) == cols.size(1) &&
                  wy.scalar_type() == at::kFloat && wx.scalar_type() == at::kFloat,
              "bilinear_u8: wy and wx must be float32, one weight per output row and column");
  const int64_t in_h = pixels.size(0), in_w = pixels.size(1);
  const int64_t h = rows.size(1), w = cols.size(1);
  const at::Tensor src = pixels.contiguous();
  const at::Tensor r = rows.contiguous(), c = cols.contiguous(), ty = wy.contiguous(), tx = wx.contiguous();
  const int64_t* r0 = r.const_data_ptr<int64_t>();
  const int64_t* c0 = c.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < 2 * h; ++i) TORCH_CHECK(r0[i] >= 0 && r0[i] < in_h, "bilinear_u8: row tap out of range");
  for (int64_t j = 0; j < 2 * w; ++j) TORCH_CHECK(c0[j] >= 0 && c0[j] < in_w, "bilinear_u8: column tap out of range");
  at::Tensor out = at::empty({1, 3, h, w}, pixels.options().dtype(at::kFloat));
  const uint8_t* p = src.const_data_ptr<uint8_t>();
  const float* fy = ty.const_data_ptr<float>();
  const float* fx = tx.const_data_ptr<float>();
  float* dst = out.mutable_data_ptr<float>();
  const int64_t plane = h * w;
  at::parallel_for(0, h, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint8_t* top = p + r0[i] * in_w * 3;
      const uint8_t* bottom = p + r0[h + i] * in_w * 3;
      const float t = fy[i];
      for (int64_t j = 0; j < w; ++j) {
        const int64_t left = c0[j] * 3, right = c0[w + j] * 3;
        const float s = fx[j];
        for (int64_t ch = 0; ch < 3; ++ch) {
          const float a0 = top[left + ch], b0 = top[right + ch];
          const float a1 = bottom[left + ch], b1 = bottom[right + ch];
          const float upper = a0 + s * (b0 - a0);
          const float lower = a1 + s * (b1 - a1);
          dst[ch * plane + i * w + j] = upper + t * (lower - upper);
        }
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(s2ccrop, CPU, m) {
  m.impl("bilinear_u8", &bilinear_u8_cpu);
}

}  // namespace s2ccrop
