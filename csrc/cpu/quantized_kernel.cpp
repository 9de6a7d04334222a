// CPU kernels of s2ccrop::qadd and s2ccrop::dequantize: the int8 backbone's residual sums and stage
// outputs (s2ccrop/model/int8_backbone.py).
//
// torch's own quantized add and dequantize round differently in their vector loops and their scalar
// tails, so which values fell in a tail (the thread count, AVX2 or AVX-512) changed the result. Here
// every operation is rounded on its own (the build passes -ffp-contract=off): the same bits on every
// CPU and thread count, and the same as the pure-PyTorch formulas in int8_backbone.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>

namespace s2ccrop {
namespace {

void check_quint8(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.is_quantized() && t.scalar_type() == at::kQUInt8 && t.qscheme() == at::kPerTensorAffine,
              "s2ccrop quantized ops: ", what, " must be a per-tensor quint8 tensor");
}

at::Tensor qadd_cpu(const at::Tensor& a, const at::Tensor& b, double scale, int64_t zero_point) {
  check_quint8(a, "a");
  check_quint8(b, "b");
  TORCH_CHECK(a.sizes() == b.sizes(), "qadd: a and b differ in shape");
  TORCH_CHECK(scale > 0 && zero_point >= 0 && zero_point <= 255, "qadd: bad output scale or zero point");
  const auto format = a.suggest_memory_format();
  const at::Tensor x = a.contiguous(format), y = b.contiguous(format);
  at::Tensor out = at::_empty_affine_quantized(a.sizes(), a.options(), scale, zero_point, format);
  const float sa = static_cast<float>(a.q_scale()), sb = static_cast<float>(b.q_scale());
  const int32_t za = static_cast<int32_t>(a.q_zero_point()), zb = static_cast<int32_t>(b.q_zero_point());
  const float s = static_cast<float>(scale);
  const float z = static_cast<float>(zero_point);
  const uint8_t* pa = reinterpret_cast<const uint8_t*>(x.const_data_ptr<c10::quint8>());
  const uint8_t* pb = reinterpret_cast<const uint8_t*>(y.const_data_ptr<c10::quint8>());
  uint8_t* po = reinterpret_cast<uint8_t*>(out.mutable_data_ptr<c10::quint8>());
  at::parallel_for(0, x.numel(), 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float fa = static_cast<float>(static_cast<int32_t>(pa[i]) - za) * sa;
      const float fb = static_cast<float>(static_cast<int32_t>(pb[i]) - zb) * sb;
      const float q = std::nearbyint((fa + fb) / s) + z;
      po[i] = static_cast<uint8_t>(q < 0.f ? 0.f : (q > 255.f ? 255.f : q));
    }
  });
  return out;
}

at::Tensor dequantize_cpu(const at::Tensor& a) {
  check_quint8(a, "the input");
  const auto format = a.suggest_memory_format();
  const at::Tensor x = a.contiguous(format);
  at::Tensor out = at::empty(a.sizes(), a.options().dtype(at::kFloat).memory_format(format));
  const float scale = static_cast<float>(a.q_scale());
  const int32_t zero_point = static_cast<int32_t>(a.q_zero_point());
  const uint8_t* pa = reinterpret_cast<const uint8_t*>(x.const_data_ptr<c10::quint8>());
  float* po = out.mutable_data_ptr<float>();
  at::parallel_for(0, x.numel(), 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      po[i] = static_cast<float>(static_cast<int32_t>(pa[i]) - zero_point) * scale;
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(s2ccrop, QuantizedCPU, m) {
  m.impl("qadd", &qadd_cpu);
  m.impl("dequantize", &dequantize_cpu);
}

}  // namespace s2ccrop
