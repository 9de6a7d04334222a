// Operator schemas of the s2ccrop library, and the Python module `s2ccrop._C` that loads them.
//
// Kernels are registered per device in cpu/align_kernel.cpp and cuda/align_kernel.cu; autograd
// formulas and fake (meta) kernels are registered from Python (s2ccrop/ops/_extension.py). The module
// also has one plain function, `lanczos_u8` (cpu/lanczos_kernel.cpp): the output resampler works on
// Pillow's bytes, not on tensors.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <new>
#include <stdexcept>

#include "cpu/lanczos.h"

#include <torch/library.h>

#ifndef S2CCROP_WITH_CUDA
#define S2CCROP_WITH_CUDA 0
#endif

#define S2CCROP_STR_(x) #x
#define S2CCROP_STR(x) S2CCROP_STR_(x)

namespace {

// lanczos_u8(pixels, (x, y, held_w, held_h), (width, height), channels, (x1, y1, x2, y2), out_w, out_h,
// vertical_first_rule) -> bytes: Pillow's Lanczos resize of the box of a `width` x `height` 8-bit L
// (1 channel) or RGB (3) image, pixel for pixel, given the part of it that holds what the resize reads:
// the `held_w` x `held_h` pixels from (x, y), as bytes row by row. The GIL is released while it runs.
PyObject* lanczos_u8(PyObject*, PyObject* args) {
  Py_buffer pixels;
  int x, y, held_w, held_h, width, height, channels, out_w, out_h, rule;
  double x1, y1, x2, y2;
  if (!PyArg_ParseTuple(args, "y*(iiii)(ii)i(dddd)iip", &pixels, &x, &y, &held_w, &held_h, &width, &height,
                        &channels, &x1, &y1, &x2, &y2, &out_w, &out_h, &rule)) {
    return nullptr;
  }
  const float box[4] = {(float)x1, (float)y1, (float)x2, (float)y2};  // as Pillow takes a box
  const char* problem = nullptr;
  if (channels != 1 && channels != 3) {
    problem = "lanczos_u8: channels must be 1 or 3";
  } else if (width <= 0 || height <= 0 || x < 0 || y < 0 || held_w <= 0 || held_h <= 0 || x + held_w > width ||
             y + held_h > height || pixels.len != (Py_ssize_t)held_w * held_h * channels) {
    problem = "lanczos_u8: the pixels are not held_w x held_h x channels bytes of the image";
  } else if (out_w <= 0 || out_h <= 0) {
    problem = "lanczos_u8: the output size must be positive";
  } else if (!(box[0] >= 0 && box[1] >= 0 && box[2] <= width && box[3] <= height && box[2] - box[0] >= 0 &&
               box[3] - box[1] >= 0)) {
    problem = "lanczos_u8: the box must lie inside the image";
  }
  PyObject* out = problem ? nullptr : PyBytes_FromStringAndSize(nullptr, (Py_ssize_t)out_w * out_h * channels);
  bool no_memory = false;
  if (out != nullptr) {
    const s2ccrop::Pixels in{static_cast<const uint8_t*>(pixels.buf), width, height, channels, x, y, held_w, held_h};
    uint8_t* dst = reinterpret_cast<uint8_t*>(PyBytes_AS_STRING(out));
    Py_BEGIN_ALLOW_THREADS
    try {
      s2ccrop::lanczos_resize(in, box, out_w, out_h, rule != 0, dst);
    } catch (const std::bad_alloc&) {
      no_memory = true;
    } catch (const std::out_of_range&) {
      problem = "lanczos_u8: the pixels given do not hold all that the resize reads";
    }
    Py_END_ALLOW_THREADS
  }
  PyBuffer_Release(&pixels);
  if (problem) {
    Py_XDECREF(out);
    PyErr_SetString(PyExc_ValueError, problem);
    return nullptr;
  }
  if (no_memory) {
    Py_DECREF(out);
    return PyErr_NoMemory();
  }
  return out;
}

PyMethodDef methods[] = {
    {"lanczos_u8", lanczos_u8, METH_VARARGS,
     "Pillow's Lanczos resize of a box of an 8-bit L or RGB image, pixel for pixel."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

extern "C" {
// Importing the module is all Python needs: the static initialisers below register the ops.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",
      "Compiled RoI/RoD align ops and the input resize, registered as torch.ops.s2ccrop.*; the output resampler",
      -1,
      methods,
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
