// CPU kernels of s2ccrop::{roi,rod}_align and their backward (SPEC §1).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../align_common.h"

namespace s2ccrop {
namespace {

// One kept output bin of a box: where it reads the map and its bilinear weights (from `locate`).
template <typename T>
struct Tap {
  int64_t bin;     // ph * aw + pw
  int64_t offset;  // row * width + col of the top-left neighbour
  T hr;
  T wr;
};

// Fills `taps` with the bins `locate` keeps for box `k` of `boxes` (rows of 5), in bin order, and
// returns the box's batch index. The box is copied to a local first: nothing the callers write can
// alias it, so the compiler may hoist locate's per-box arithmetic out of the bin loops.
template <Mode mode, typename T>
int64_t locate_box(const T* boxes, int64_t k, T scale, int64_t height, int64_t width, int64_t ah, int64_t aw,
                   std::vector<Tap<T>>& taps) {
  T roi[5];
  std::copy(boxes + k * 5, boxes + k * 5 + 5, roi);
  taps.clear();
  Sample<T> s;
  for (int64_t ph = 0; ph < ah; ++ph) {
    for (int64_t pw = 0; pw < aw; ++pw) {
      if (locate<mode>(roi, scale, height, width, ah, aw, ph, pw, s)) {
        taps.push_back({ph * aw + pw, s.row * width + s.col, s.hr, s.wr});
      }
    }
  }
  return static_cast<int64_t>(roi[0]);
}

template <Mode mode, typename scalar_t>
void forward_cpu_impl(const at::Tensor& features, const at::Tensor& rois, double spatial_scale, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t num_rois = out.size(0), channels = out.size(1), ah = out.size(2), aw = out.size(3);
  const int64_t height = features.size(2), width = features.size(3);
  const int64_t bins = ah * aw, plane_size = height * width;
  const scalar_t* feat = features.const_data_ptr<scalar_t>();
  const acc_t* boxes = rois.const_data_ptr<acc_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  const acc_t scale = static_cast<acc_t>(spatial_scale);
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, bins * channels * 8));

  // One box per task (tasks write disjoint outputs). Where a bin samples the map depends on the box and
  // the bin, not on the channel: each box's bins are located once, then blended for every channel.
  // `out` comes zeroed (forward_cpu): bins that `locate` rejects are not written and stay 0.
  at::parallel_for(0, num_rois, grain, [&](int64_t begin, int64_t end) {
    std::vector<Tap<acc_t>> taps;  // reused for every box of this task
    taps.reserve(static_cast<size_t>(bins));
    for (int64_t k = begin; k < end; ++k) {
      const int64_t image = locate_box<mode>(boxes, k, scale, height, width, ah, aw, taps);
      if (taps.empty()) {
        continue;
      }
      const scalar_t* feat_k = feat + image * channels * plane_size;
      scalar_t* out_k = dst + k * channels * bins;
      for (int64_t c = 0; c < channels; ++c) {
        const scalar_t* plane = feat_k + c * plane_size;
        scalar_t* out_plane = out_k + c * bins;
        for (const Tap<acc_t>& t : taps) {
          const scalar_t* p = plane + t.offset;
          const acc_t value =
              static_cast<acc_t>(p[0]) * (1 - t.hr) * (1 - t.wr) + static_cast<acc_t>(p[1]) * (1 - t.hr) * t.wr +
              static_cast<acc_t>(p[width]) * t.hr * (1 - t.wr) + static_cast<acc_t>(p[width + 1]) * t.hr * t.wr;
          out_plane[t.bin] = static_cast<scalar_t>(value);
        }
      }
    }
  });
}

template <Mode mode, typename scalar_t>
void backward_cpu_impl(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                       at::Tensor& grad_features) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t num_rois = grad.size(0), channels = grad.size(1), ah = grad.size(2), aw = grad.size(3);
  const int64_t height = grad_features.size(2), width = grad_features.size(3);
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  const acc_t* boxes = rois.const_data_ptr<acc_t>();
  acc_t* dst = grad_features.mutable_data_ptr<acc_t>();
  const acc_t scale = static_cast<acc_t>(spatial_scale);

  // a range of channels per task: every box scatters into its own channel plane only, so no two
  // tasks ever add into the same element (no atomics needed). Each box's bins are located once per
  // task; within a channel the additions keep their order (box by box, bin by bin).
  at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<Tap<acc_t>> taps;  // reused for every box
    taps.reserve(static_cast<size_t>(ah * aw));
    for (int64_t k = 0; k < num_rois; ++k) {
      const int64_t image = locate_box<mode>(boxes, k, scale, height, width, ah, aw, taps);
      for (int64_t c = begin; c < end; ++c) {
        acc_t* plane = dst + (image * channels + c) * height * width;
        const scalar_t* g_plane = g + (k * channels + c) * ah * aw;
        for (const Tap<acc_t>& t : taps) {
          const acc_t go = static_cast<acc_t>(g_plane[t.bin]);
          acc_t* p = plane + t.offset;
          p[0] += go * (1 - t.hr) * (1 - t.wr);
          p[1] += go * (1 - t.hr) * t.wr;
          p[width] += go * t.hr * (1 - t.wr);
          p[width + 1] += go * t.hr * t.wr;
        }
      }
    }
  });
}

template <Mode mode>
at::Tensor forward_cpu(const at::Tensor& features, const at::Tensor& rois, int64_t ah, int64_t aw,
                       double spatial_scale) {
  const char* op = mode == Mode::RoI ? "roi_align" : "rod_align";
  check_forward_inputs(op, features, rois, ah, aw);
  // zeros, not empty: the CPU kernel writes only the bins it samples
  at::Tensor out = at::zeros({rois.size(0), features.size(1), ah, aw}, features.options());
  if (out.numel() == 0) {
    return out;
  }
  check_batch_indices(op, rois, features.size(0));
  const at::Tensor feats = features.contiguous();
  const at::Tensor boxes = rois_for(rois, features.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feats.scalar_type(), "s2ccrop_align_cpu", [&] {
    forward_cpu_impl<mode, scalar_t>(feats, boxes, spatial_scale, out);
  });
  return out;
}

template <Mode mode>
at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& rois, int64_t ah, int64_t aw,
                        double spatial_scale, int64_t batch, int64_t channels, int64_t height, int64_t width) {
  const char* op = mode == Mode::RoI ? "roi_align_backward" : "rod_align_backward";
  check_backward_inputs(op, grad, rois, ah, aw, batch, channels, height, width);
  // accumulate in the compute type (float for half / bfloat16), cast once at the end
  at::Tensor grad_features =
      at::zeros({batch, channels, height, width}, grad.options().dtype(at::toOpMathType(grad.scalar_type())));
  if (grad.numel() == 0 || grad_features.numel() == 0) {
    return grad_features.to(grad.scalar_type());
  }
  check_batch_indices(op, rois, batch);
  const at::Tensor g = grad.contiguous();
  const at::Tensor boxes = rois_for(rois, grad.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "s2ccrop_align_backward_cpu", [&] {
    backward_cpu_impl<mode, scalar_t>(g, boxes, spatial_scale, grad_features);
  });
  return grad_features.to(grad.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(s2ccrop, CPU, m) {
  m.impl("roi_align", &forward_cpu<Mode::RoI>);
  m.impl("rod_align", &forward_cpu<Mode::RoD>);
  m.impl("roi_align_backward", &backward_cpu<Mode::RoI>);
  m.impl("rod_align_backward", &backward_cpu<Mode::RoD>);
}

}  // namespace s2ccrop
