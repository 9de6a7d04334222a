// Operator schemas of the s2ccrop library, and the Python module `s2ccrop._C` that loads them.
//
// Kernels are registered per device in cpu/align_kernel.cpp and cuda/align_kernel.cu; autograd
// formulas and fake (meta) kernels are registered from Python (s2ccrop/ops/_extension.py).
#include <Python.h>

#include <torch/library.h>

#ifndef S2CCROP_WITH_CUDA
#define S2CCROP_WITH_CUDA 0
#endif

#define S2CCROP_STR_(x) #x
#define S2CCROP_STR(x) S2CCROP_STR_(x)

extern "C" {
// Importing the module is all Python needs: the static initialisers below register the ops.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",
      "Compiled RoI/RoD align ops and the input resize, registered as torch.ops.s2ccrop.*",
      -1,
      nullptr,
  };
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) {
    return nullptr;
  }
  if (PyModule_AddIntConstant(module, "WITH_CUDA", S2CCROP_WITH_CUDA) != 0
#ifdef S2CCROP_TORCH_VERSION
      || PyModule_AddStringConstant(module, "TORCH_VERSION", S2CCROP_STR(S2CCROP_TORCH_VERSION)) != 0
#endif
  ) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
}

TORCH_LIBRARY(s2ccrop, m) {
  // features [B, C, H, W], rois [K, 5] = (batch_index, x1, y1, x2, y2) -> [K, C, aligned_height, aligned_width]
  m.def("roi_align(Tensor features, Tensor rois, int aligned_height, int aligned_width, float spatial_scale) -> Tensor");
  m.def("rod_align(Tensor features, Tensor rois, int aligned_height, int aligned_width, float spatial_scale) -> Tensor");
  // grad [K, C, aligned_height, aligned_width] -> gradient w.r.t. features [batch, channels, height, width]
  m.def(
      "roi_align_backward(Tensor grad, Tensor rois, int aligned_height, int aligned_width, float spatial_scale, "
      "SymInt batch, SymInt channels, SymInt height, SymInt width) -> Tensor");
  m.def(
      "rod_align_backward(Tensor grad, Tensor rois, int aligned_height, int aligned_width, float spatial_scale, "
      "SymInt batch, SymInt channels, SymInt height, SymInt width) -> Tensor");
  // pixels uint8 [H, W, 3], rows/cols int64 [2, n] (first and second taps), wy [h], wx [w] -> float [1, 3, h, w]
  // (the model input's bilinear resize, CPU only: s2ccrop/preprocess.py)
  m.def("bilinear_u8(Tensor pixels, Tensor rows, Tensor cols, Tensor wy, Tensor wx) -> Tensor");
  // quint8 a, b (same shape) -> quint8 at (scale, zero_point): quantise(dequantise(a) + dequantise(b));
  // quint8 -> float32 (q - zero_point) * scale (the int8 backbone's sums and outputs: cpu/quantized_kernel.cpp)
  m.def("qadd(Tensor a, Tensor b, float scale, int zero_point) -> Tensor");
  m.def("dequantize(Tensor a) -> Tensor");
}
