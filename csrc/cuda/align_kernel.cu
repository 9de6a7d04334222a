// CUDA kernels of s2ccrop::{roi,rod}_align and their backward (SPEC §1).
#include <ATen/cuda/Atomic.cuh>
// c10 stream header, not ATen/cuda/CUDAContext.h: that one needs cuSPARSE/cuBLAS headers a minimal toolkit lacks
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "../align_common.h"

namespace s2ccrop {
namespace {

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) {
  // grid-stride loops cover the rest; the cap keeps the grid size valid for any n
  return static_cast<unsigned int>(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 16));
}

// One thread per output element (k, c, ph, pw).
template <Mode mode, typename scalar_t, typename acc_t>
__global__ void forward_kernel(int64_t n, const scalar_t* __restrict__ features, const acc_t* __restrict__ rois,
                               acc_t scale, int64_t channels, int64_t height, int64_t width, int64_t ah, int64_t aw,
                               scalar_t* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t pw = i % aw;
    const int64_t ph = (i / aw) % ah;
    const int64_t c = (i / (aw * ah)) % channels;
    const int64_t k = i / (aw * ah * channels);
    const acc_t* roi = rois + k * 5;
    Sample<acc_t> s;
    acc_t value = 0;
    if (locate<mode>(roi, scale, height, width, ah, aw, ph, pw, s)) {
      const scalar_t* p =
          features + ((static_cast<int64_t>(roi[0]) * channels + c) * height + s.row) * width + s.col;
      value = static_cast<acc_t>(p[0]) * (1 - s.hr) * (1 - s.wr) + static_cast<acc_t>(p[1]) * (1 - s.hr) * s.wr +
              static_cast<acc_t>(p[width]) * s.hr * (1 - s.wr) + static_cast<acc_t>(p[width + 1]) * s.hr * s.wr;
    }
    out[i] = static_cast<scalar_t>(value);
  }
}

// One thread per grad element; the four neighbours are shared between threads, hence atomics.
template <Mode mode, typename scalar_t, typename acc_t>
__global__ void backward_kernel(int64_t n, const scalar_t* __restrict__ grad, const acc_t* __restrict__ rois,
                                acc_t scale, int64_t channels, int64_t height, int64_t width, int64_t ah, int64_t aw,
                                scalar_t* __restrict__ grad_features) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t pw = i % aw;
    const int64_t ph = (i / aw) % ah;
    const int64_t c = (i / (aw * ah)) % channels;
    const int64_t k = i / (aw * ah * channels);
    const acc_t* roi = rois + k * 5;
    Sample<acc_t> s;
    if (!locate<mode>(roi, scale, height, width, ah, aw, ph, pw, s)) {
      continue;
    }
    const acc_t g = static_cast<acc_t>(grad[i]);
    scalar_t* p = grad_features + ((static_cast<int64_t>(roi[0]) * channels + c) * height + s.row) * width + s.col;
    gpuAtomicAdd(p, static_cast<scalar_t>(g * (1 - s.hr) * (1 - s.wr)));
    gpuAtomicAdd(p + 1, static_cast<scalar_t>(g * (1 - s.hr) * s.wr));
    gpuAtomicAdd(p + width, static_cast<scalar_t>(g * s.hr * (1 - s.wr)));
    gpuAtomicAdd(p + width + 1, static_cast<scalar_t>(g * s.hr * s.wr));
  }
}

template <Mode mode>
at::Tensor forward_cuda(const at::Tensor& features, const at::Tensor& rois, int64_t ah, int64_t aw,
                        double spatial_scale) {
  const char* op = mode == Mode::RoI ? "roi_align" : "rod_align";
  check_forward_inputs(op, features, rois, ah, aw);
  const c10::cuda::CUDAGuard device_guard(features.device());
  at::Tensor out = at::zeros({rois.size(0), features.size(1), ah, aw}, features.options());
  if (out.numel() == 0) {
    return out;
  }
  check_batch_indices(op, rois, features.size(0));
  const at::Tensor feats = features.contiguous();
  const at::Tensor boxes = rois_for(rois, features.scalar_type());
  const int64_t n = out.numel();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feats.scalar_type(), "s2ccrop_align_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_kernel<mode, scalar_t, acc_t><<<blocks_for(n), kThreads, 0, stream>>>(
        n, feats.const_data_ptr<scalar_t>(), boxes.const_data_ptr<acc_t>(), static_cast<acc_t>(spatial_scale),
        feats.size(1), feats.size(2), feats.size(3), ah, aw, out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

template <Mode mode>
at::Tensor backward_cuda(const at::Tensor& grad, const at::Tensor& rois, int64_t ah, int64_t aw,
                         double spatial_scale, int64_t batch, int64_t channels, int64_t height, int64_t width) {
  const char* op = mode == Mode::RoI ? "roi_align_backward" : "rod_align_backward";
  check_backward_inputs(op, grad, rois, ah, aw, batch, channels, height, width);
  const c10::cuda::CUDAGuard device_guard(grad.device());
  at::Tensor grad_features = at::zeros({batch, channels, height, width}, grad.options());
  if (grad.numel() == 0 || grad_features.numel() == 0) {
    return grad_features;
  }
  check_batch_indices(op, rois, batch);
  const at::Tensor g = grad.contiguous();
  const at::Tensor boxes = rois_for(rois, grad.scalar_type());
  const int64_t n = g.numel();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "s2ccrop_align_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    backward_kernel<mode, scalar_t, acc_t><<<blocks_for(n), kThreads, 0, stream>>>(
        n, g.const_data_ptr<scalar_t>(), boxes.const_data_ptr<acc_t>(), static_cast<acc_t>(spatial_scale), channels,
        height, width, ah, aw, grad_features.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_features;
}

}  // namespace

TORCH_LIBRARY_IMPL(s2ccrop, CUDA, m) {
  m.impl("roi_align", &forward_cuda<Mode::RoI>);
  m.impl("rod_align", &forward_cuda<Mode::RoD>);
  m.impl("roi_align_backward", &backward_cuda<Mode::RoI>);
  m.impl("rod_align_backward", &backward_cuda<Mode::RoD>);
}

}  // namespace s2ccrop
