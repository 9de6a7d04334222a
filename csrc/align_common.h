// Shared by the CPU and CUDA kernels: input checks and the sampling rule of SPEC §1.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/macros/Macros.h>

#include <cstdint>
#include <string>

namespace s2ccrop {

enum class Mode { RoI, RoD };

// On the device a*b + c would be contracted into one fused multiply-add, which rounds differently
// from the separate multiply and add of the SPEC, the fallback and the CPU kernel: a sample that
// lands exactly on a map or box edge would then flip between kept and zeroed.
C10_HOST_DEVICE inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

C10_HOST_DEVICE inline double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// Where output bin (ph, pw) samples the map, with bilinear weights; T is the compute type.
template <typename T>
struct Sample {
  int64_t row;  // top-left neighbour, at most H-2 / W-2
  int64_t col;
  T hr;  // may exceed 1 on the last row / column: the SPEC keeps it
  T wr;
};

// Returns false where the op writes 0 (RoI: outside the map; RoD: inside the box).
// `roi` points at (batch_index, x1, y1, x2, y2) in input pixels.
template <Mode mode, typename T>
C10_HOST_DEVICE inline bool locate(const T* roi, T scale, int64_t height, int64_t width, int64_t ah, int64_t aw,
                                   int64_t ph, int64_t pw, Sample<T>& s) {
  const T x1 = mul_rn(roi[1], scale);
  const T y1 = mul_rn(roi[2], scale);
  const T x2 = mul_rn(roi[3], scale);
  const T y2 = mul_rn(roi[4], scale);
  T y;
  T x;
  if (mode == Mode::RoI) {
    T roi_w = (x2 - x1) + T(1);
    T roi_h = (y2 - y1) + T(1);
    roi_w = roi_w > T(0) ? roi_w : T(0);
    roi_h = roi_h > T(0) ? roi_h : T(0);
    const T bin_w = roi_w / static_cast<T>(aw - 1);
    const T bin_h = roi_h / static_cast<T>(ah - 1);
    y = mul_rn(static_cast<T>(ph), bin_h) + y1;
    x = mul_rn(static_cast<T>(pw), bin_w) + x1;
    // written positively so that NaN coordinates are zeroed too
    if (!(y >= T(0) && y < static_cast<T>(height) && x >= T(0) && x < static_cast<T>(width))) {
      return false;
    }
  } else {
    const T bin_w = static_cast<T>(static_cast<double>(width) - 1.001) / static_cast<T>(aw - 1);
    const T bin_h = static_cast<T>(static_cast<double>(height) - 1.001) / static_cast<T>(ah - 1);
    y = mul_rn(static_cast<T>(ph), bin_h);
    x = mul_rn(static_cast<T>(pw), bin_w);
    if (y1 <= y && y <= y2 && x1 <= x && x <= x2) {
      return false;
    }
  }
  // y, x >= 0 here, so truncation is floor
  s.row = static_cast<int64_t>(y) < height - 2 ? static_cast<int64_t>(y) : height - 2;
  s.col = static_cast<int64_t>(x) < width - 2 ? static_cast<int64_t>(x) : width - 2;
  s.hr = y - static_cast<T>(s.row);
  s.wr = x - static_cast<T>(s.col);
  return true;
}

inline void check_output_size(const char* op, int64_t ah, int64_t aw) {
  TORCH_CHECK(ah >= 2 && aw >= 2, op, ": output size must be at least 2x2, got ", ah, "x", aw);
}

inline void check_rois(const char* op, const at::Tensor& rois) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op,
              ": rois must be [K, 5] = (batch_index, x1, y1, x2, y2), got shape ", rois.sizes());
  TORCH_CHECK(rois.is_floating_point(), op, ": rois must be floating point, got ", rois.scalar_type());
}

inline void check_forward_inputs(const char* op, const at::Tensor& features, const at::Tensor& rois, int64_t ah,
                                 int64_t aw) {
  TORCH_CHECK(features.dim() == 4, op, ": features must be [B, C, H, W], got shape ", features.sizes());
  TORCH_CHECK(features.size(2) >= 2 && features.size(3) >= 2, op, ": the feature map must be at least 2x2, got ",
              features.size(2), "x", features.size(3));
  TORCH_CHECK(features.is_floating_point(), op, ": features must be floating point, got ", features.scalar_type());
  check_rois(op, rois);
  TORCH_CHECK(features.device() == rois.device(), op, ": features are on ", features.device(), " but rois on ",
              rois.device());
  check_output_size(op, ah, aw);
}

inline void check_backward_inputs(const char* op, const at::Tensor& grad, const at::Tensor& rois, int64_t ah,
                                  int64_t aw, int64_t batch, int64_t channels, int64_t height, int64_t width) {
  check_rois(op, rois);
  check_output_size(op, ah, aw);
  TORCH_CHECK(grad.is_floating_point(), op, ": grad must be floating point, got ", grad.scalar_type());
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels && grad.size(2) == ah &&
                  grad.size(3) == aw,
              op, ": grad must be [K, C, ah, aw] = [", rois.size(0), ", ", channels, ", ", ah, ", ", aw, "], got ",
              grad.sizes());
  TORCH_CHECK(batch >= 0 && channels >= 0 && height >= 2 && width >= 2, op,
              ": invalid features shape [", batch, ", ", channels, ", ", height, ", ", width, "]");
  TORCH_CHECK(grad.device() == rois.device(), op, ": grad is on ", grad.device(), " but rois on ", rois.device());
}

// The batch index is truncated to an integer (as the legacy kernels do), so (-1, B) is valid.
// One host sync on CUDA; worth it to turn an out-of-bounds read into a readable error.
inline void check_batch_indices(const char* op, const at::Tensor& rois, int64_t batch) {
  if (rois.size(0) == 0) {
    return;
  }
  const at::Tensor index = rois.select(1, 0);
  const at::Tensor bad = at::logical_not(at::logical_and(index.gt(-1), index.lt(batch)));
  if (bad.any().item<bool>()) {
    const double value = index.masked_select(bad)[0].item<double>();
    TORCH_CHECK(false, op, ": rois batch index ", value, " is out of range for ", batch, " feature map(s)");
  }
}

// rois in the compute type, contiguous: a copy when needed, never an edit of the caller's tensor.
inline at::Tensor rois_for(const at::Tensor& rois, at::ScalarType input_type) {
  return rois.to(at::toOpMathType(input_type)).contiguous();
}

}  // namespace s2ccrop
