// `lanczos_resize`: an output's Lanczos resample (s2ccrop/io/render.py, through `s2ccrop._C.lanczos_u8`),
// pixel for pixel the result of Pillow's `Image.resize(size, LANCZOS, box=box)` on an 8-bit L or RGB
// image.
//
// The same arithmetic as Pillow's 8-bit resampler, so a thumbnail does not depend on whether this
// extension was built: the taps of each output pixel and their weights are computed in double exactly
// as Pillow computes them (the box as float32, the weights normalised by division, then rounded to
// 22-bit fixed point), and each pass sums integer products, so the sums are exact in any order. What
// differs is the order of the loops: both passes run along contiguous memory (the horizontal one on a
// transposed copy of the rows it reads), so they vectorise, and run several times faster than Pillow's
// per-pixel loops. Where the CPU has AVX2 (checked at run time) the filter and the transposes are
// written with its instructions; elsewhere plain loops do the same work. Integer sums do not depend on
// their order or the vector width, so every path gives the same bytes.
#include "lanczos.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

namespace s2ccrop {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS for 8-bit images
constexpr double kSupport = 3.0;            // Lanczos-3

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return std::sin(x) / x;
}

double lanczos(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

// The taps of every output pixel along one axis: output i reads inputs start[i] .. start[i] + count[i]
// with the fixed-point weights weight[i * ksize + k].
struct Taps {
  int ksize = 0;
  std::vector<int> start, count;
  std::vector<int32_t> weight;
  int first() const { return start.front(); }
  int last() const { return start.back() + count.back(); }  // one past the last input read
};

Taps make_taps(int in_size, float in0, float in1, int out_size) {
  Taps t;
  double scale = (double)(in1 - in0) / out_size;  // the float32 difference, as Pillow takes it
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = kSupport * filterscale;
  t.ksize = (int)std::ceil(support) * 2 + 1;
  t.start.resize(out_size);
  t.count.resize(out_size);
  t.weight.assign((size_t)out_size * t.ksize, 0);
  std::vector<double> w(t.ksize);
  for (int i = 0; i < out_size; ++i) {
    const double center = in0 + (i + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int lo = (int)(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = (int)(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int n = hi - lo;
    double total = 0.0;
    for (int k = 0; k < n; ++k) {
      w[k] = lanczos((k + lo - center + 0.5) * ss);
      total += w[k];
    }
    int32_t* out = &t.weight[(size_t)i * t.ksize];
    for (int k = 0; k < n; ++k) {
      const double v = total != 0.0 ? w[k] / total : w[k];
      out[k] = v < 0 ? (int32_t)(-0.5 + v * (1 << kPrecisionBits)) : (int32_t)(0.5 + v * (1 << kPrecisionBits));
    }
    t.start[i] = lo;
    t.count[i] = n > 0 ? n : 0;
  }
  return t;
}

// A fixed-point sum as a byte: shifted down, clipped to [0, 255].
inline uint8_t clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// dst[j] = clip8(2^21 + sum_k weight[k] * rows[k][j]) for j < n: one output line from `taps`
// input lines (each `n` bytes). Four taps per sweep keep the accumulator in registers longer.
void filter_lines(const uint8_t* const* rows, const int32_t* weight, int taps, int64_t n,
                  int32_t* __restrict__ acc, uint8_t* __restrict__ dst) {
  const int32_t half = 1 << (kPrecisionBits - 1);
  for (int64_t j = 0; j < n; ++j) acc[j] = half;
  int k = 0;
  for (; k + 4 <= taps; k += 4) {
    const uint8_t *__restrict__ a = rows[k], *__restrict__ b = rows[k + 1], *__restrict__ c = rows[k + 2],
                                *__restrict__ d = rows[k + 3];
    const int32_t wa = weight[k], wb = weight[k + 1], wc = weight[k + 2], wd = weight[k + 3];
    for (int64_t j = 0; j < n; ++j) {
      acc[j] += wa * (int32_t)a[j] + wb * (int32_t)b[j] + wc * (int32_t)c[j] + wd * (int32_t)d[j];
    }
  }
  for (; k < taps; ++k) {
    const uint8_t* __restrict__ a = rows[k];
    const int32_t wa = weight[k];
    for (int64_t j = 0; j < n; ++j) acc[j] += wa * (int32_t)a[j];
  }
  for (int64_t j = 0; j < n; ++j) dst[j] = clip8(acc[j]);
}

#if defined(__GNUC__) && defined(__x86_64__)
#define S2CCROP_AVX2 1
bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

// The 8 bytes at p as int32 lanes, times w.
__attribute__((target("avx2"))) inline __m256i times(const uint8_t* p, __m256i w) {
  return _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), w);
}

// `filter_lines` with AVX2, the sums kept in registers: 32 outputs at a time, every tap added before
// they are stored.
__attribute__((target("avx2"))) void filter_lines_avx2(const uint8_t* const* rows, const int32_t* weight, int taps,
                                                      int64_t n, uint8_t* __restrict__ dst) {
  const __m256i half = _mm256_set1_epi32(1 << (kPrecisionBits - 1));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256i s0 = half, s1 = half, s2 = half, s3 = half;
    for (int k = 0; k < taps; ++k) {
      const __m256i w = _mm256_set1_epi32(weight[k]);
      const uint8_t* r = rows[k] + j;
      s0 = _mm256_add_epi32(s0, times(r, w));
      s1 = _mm256_add_epi32(s1, times(r + 8, w));
      s2 = _mm256_add_epi32(s2, times(r + 16, w));
      s3 = _mm256_add_epi32(s3, times(r + 24, w));
    }
    // >> 22, then saturating packs (int32 -> int16 -> uint8): the clip to [0, 255], in lane order
    const int b = kPrecisionBits;
    const __m256i lo = _mm256_packs_epi32(_mm256_srai_epi32(s0, b), _mm256_srai_epi32(s1, b));
    const __m256i hi = _mm256_packs_epi32(_mm256_srai_epi32(s2, b), _mm256_srai_epi32(s3, b));
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(lo, hi), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j), bytes);
  }
  for (; j < n; ++j) {
    int32_t sum = 1 << (kPrecisionBits - 1);
    for (int k = 0; k < taps; ++k) sum += weight[k] * (int32_t)rows[k][j];
    dst[j] = clip8(sum);
  }
}
#endif

// out[x][y][c] = in[y][x][c] for a `height` x `width` block of CH-byte pixels (strides in bytes), in
// tiles that stay in the cache.
template <int CH>
void transpose_tiles(const uint8_t* __restrict__ in, int64_t in_stride, uint8_t* __restrict__ out, int64_t out_stride,
                     int64_t height, int64_t width) {
  constexpr int64_t B = 16;
  for (int64_t y0 = 0; y0 < height; y0 += B) {
    const int64_t y1 = std::min(height, y0 + B);
    for (int64_t x0 = 0; x0 < width; x0 += B) {
      const int64_t x1 = std::min(width, x0 + B);
      for (int64_t x = x0; x < x1; ++x) {
        uint8_t* __restrict__ o = out + x * out_stride + y0 * CH;
        const uint8_t* __restrict__ p = in + y0 * in_stride + x * CH;
        int64_t y = y0;
        if (CH == 3) {  // 4 bytes at a time, the 4th overwritten by the next pixel; the tile's last one exactly
          for (; y + 1 < y1; ++y, o += CH, p += in_stride) std::memcpy(o, p, 4);
        }
        for (; y < y1; ++y, o += CH, p += in_stride) {
          for (int c = 0; c < CH; ++c) o[c] = p[c];
        }
      }
    }
  }
}

#ifdef S2CCROP_AVX2
// transpose_tiles<3> with AVX2: 8 x 8 pixels at a time, each row's 24 bytes widened to eight 4-byte
// lanes, the 8 x 8 lanes transposed, each column narrowed back to 24 bytes. Edges as above.
__attribute__((target("avx2"))) void transpose_rgb_avx2(const uint8_t* __restrict__ in, int64_t in_stride,
                                                       uint8_t* __restrict__ out, int64_t out_stride, int64_t height,
                                                       int64_t width) {
  const __m256i spread = _mm256_setr_epi32(0, 1, 2, 3, 3, 4, 5, 6);  // lanes: bytes 0-15 | bytes 12-27
  const __m256i widen = _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1,  //
                                         0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
  const __m256i narrow = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,  //
                                          0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
  const __m256i gather = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);  // 12 + 12 bytes together
  const int64_t h8 = height - height % 8, w8 = width - width % 8;
  for (int64_t y0 = 0; y0 < h8; y0 += 8) {
    for (int64_t x0 = 0; x0 < w8; x0 += 8) {
      __m256i r[8];
      for (int i = 0; i < 8; ++i) {
        const uint8_t* p = in + (y0 + i) * in_stride + x0 * 3;
        const __m256i raw = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i*)p)),
                                                    _mm_loadl_epi64((const __m128i*)(p + 16)), 1);
        r[i] = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(raw, spread), widen);
      }
      const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
      const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
      const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
      const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
      const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
      const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
      const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
      const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
      const __m256i c[8] = {_mm256_permute2x128_si256(u0, u4, 0x20), _mm256_permute2x128_si256(u1, u5, 0x20),
                            _mm256_permute2x128_si256(u2, u6, 0x20), _mm256_permute2x128_si256(u3, u7, 0x20),
                            _mm256_permute2x128_si256(u0, u4, 0x31), _mm256_permute2x128_si256(u1, u5, 0x31),
                            _mm256_permute2x128_si256(u2, u6, 0x31), _mm256_permute2x128_si256(u3, u7, 0x31)};
      for (int i = 0; i < 8; ++i) {
        const __m256i packed = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(c[i], narrow), gather);
        uint8_t* o = out + (x0 + i) * out_stride + y0 * 3;
        _mm_storeu_si128((__m128i*)o, _mm256_castsi256_si128(packed));
        _mm_storel_epi64((__m128i*)(o + 16), _mm256_extracti128_si256(packed, 1));
      }
    }
  }
  // the edges: the last width % 8 pixels of the rows done, then the last height % 8 rows
  if (w8 < width) transpose_tiles<3>(in + w8 * 3, in_stride, out + w8 * out_stride, out_stride, h8, width - w8);
  if (h8 < height) transpose_tiles<3>(in + h8 * in_stride, in_stride, out + h8 * 3, out_stride, height - h8, width);
}
#endif

void transpose(const uint8_t* in, int64_t in_stride, uint8_t* out, int64_t out_stride, int64_t height,
               int64_t width, int ch) {
#ifdef S2CCROP_AVX2
  if (ch == 3 && has_avx2()) {
    transpose_rgb_avx2(in, in_stride, out, out_stride, height, width);
    return;
  }
#endif
  if (ch == 3) {
    transpose_tiles<3>(in, in_stride, out, out_stride, height, width);
  } else {
    transpose_tiles<1>(in, in_stride, out, out_stride, height, width);
  }
}

// Scratch memory, kept per thread between calls: fresh pages for it on every call (the allocator
// hands large blocks back to the system) would cost a good part of a pass.
struct Scratch {
  std::vector<int32_t> acc;
  std::vector<uint8_t> columns, filtered, between;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// After a call that needed more than this (a large output's intermediate image), the thread's scratch
// memory is handed back.
constexpr size_t kScratchKept = size_t(16) << 20;

void trim_scratch() {
  Scratch& s = scratch();
  if (s.acc.capacity() * sizeof(int32_t) + s.columns.capacity() + s.filtered.capacity() + s.between.capacity() >
      kScratchKept) {
    s = Scratch();
  }
}

template <typename T>
T* room(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Each output line (`lines` of `n` bytes, line i at dst + i * dst_stride) from the input lines `taps`
// names (line l at src + (l - offset) * src_stride).
void filter_all(const uint8_t* src, int64_t src_stride, int offset, const Taps& taps, int64_t n, uint8_t* dst,
                int64_t dst_stride) {
#ifdef S2CCROP_AVX2
  const bool avx2 = has_avx2();
#else
  const bool avx2 = false;
#endif
  int32_t* acc = avx2 ? nullptr : room(scratch().acc, (size_t)n);  // only the plain loops sum in memory
  std::vector<const uint8_t*> rows(taps.ksize);
  for (size_t i = 0; i < taps.start.size(); ++i) {
    for (int k = 0; k < taps.count[i]; ++k) rows[k] = src + (int64_t)(taps.start[i] - offset + k) * src_stride;
    const int32_t* weight = &taps.weight[i * taps.ksize];
#ifdef S2CCROP_AVX2
    if (avx2) {
      filter_lines_avx2(rows.data(), weight, taps.count[i], n, dst + i * dst_stride);
      continue;
    }
#endif
    filter_lines(rows.data(), weight, taps.count[i], n, acc, dst + i * dst_stride);
  }
}

// Lines of `ch`-byte pixels filtered across: `n_lines` lines (`stride` bytes apart) whose pixels
// `taps` read (pixel p at src + (p - first) * ch), into as many pixels per line as `taps` has outputs.
// A strip of lines at a time is transposed, so that each tap reads a contiguous column of every line's
// pixel; a strip stays in the cache.
void filter_across(const uint8_t* src, int64_t stride, int64_t n_lines, int first, const Taps& taps, int ch,
                   uint8_t* dst, int64_t dst_stride) {
  constexpr int64_t kStrip = 128;
  const int n_cols = taps.last() - taps.first();
  const int64_t out_w = (int64_t)taps.start.size();
  const int64_t line = std::min(n_lines, kStrip) * ch;  // a transposed column: a strip's pixels
  uint8_t* columns = room(scratch().columns, (size_t)n_cols * line);
  uint8_t* filtered = room(scratch().filtered, (size_t)out_w * line);
  for (int64_t y = 0; y < n_lines; y += kStrip) {
    const int64_t lines = std::min(kStrip, n_lines - y);
    transpose(src + y * stride + (int64_t)(taps.first() - first) * ch, stride, columns, line, lines, n_cols, ch);
    filter_all(columns, line, taps.first(), taps, lines * ch, filtered, line);
    transpose(filtered, line, dst + y * dst_stride, dst_stride, out_w, lines, ch);
  }
}

}  // namespace

void lanczos_resize(const Pixels& in, const float box[4], int out_w, int out_h, bool vertical_first_rule,
                    uint8_t* dst) {
  const float* b = box;
  const int in_w = in.width, in_h = in.height, ch = in.channels;
  // Pillow's own choices: which passes are needed, and (Pillow 13 on) the vertical pass first where
  // the height shrinks more than twice as much as the width.
  const bool horizontal = out_w != in_w || b[0] != 0 || b[2] != out_w;
  const bool vertical = out_h != in_h || b[1] != 0 || b[3] != out_h;
  const bool vertical_first = vertical_first_rule && (in_h - out_h) > 0 && (in_h - out_h) > (in_w - out_w) * 2;
  const Taps vt = make_taps(in_h, b[1], b[3], out_h), ht = make_taps(in_w, b[0], b[2], out_w);
  // The pixels given must hold every one a pass reads (all of them, along an axis not resampled).
  const int col0 = horizontal ? ht.first() : 0, col1 = horizontal ? ht.last() : in_w;
  const int row0 = vertical ? vt.first() : 0, row1 = vertical ? vt.last() : in_h;
  if (col0 < in.x || col1 > in.x + in.held_w || row0 < in.y || row1 > in.y + in.held_h) {
    throw std::out_of_range("lanczos_u8: the pixels given do not hold all the resize reads");
  }
  const int64_t in_stride = (int64_t)in.held_w * ch, dst_stride = (int64_t)out_w * ch;
  const uint8_t* at = in.data + (int64_t)(row0 - in.y) * in_stride + (int64_t)(col0 - in.x) * ch;  // (col0, row0)
  if (!horizontal && !vertical) {
    for (int y = 0; y < out_h; ++y) std::copy_n(at + y * in_stride, dst_stride, dst + y * dst_stride);
  } else if (!horizontal) {
    filter_all(at, in_stride, row0, vt, dst_stride, dst, dst_stride);
  } else if (!vertical) {
    filter_across(at, in_stride, in_h, col0, ht, ch, dst, dst_stride);
  } else if (!vertical_first) {  // across the rows the vertical pass reads, then down
    uint8_t* across = room(scratch().between, (size_t)(row1 - row0) * dst_stride);
    filter_across(at, in_stride, row1 - row0, col0, ht, ch, across, dst_stride);
    filter_all(across, dst_stride, row0, vt, dst_stride, dst, dst_stride);
  } else {  // down the columns the horizontal pass reads, then across
    const int64_t down_stride = (int64_t)(col1 - col0) * ch;
    uint8_t* down = room(scratch().between, (size_t)out_h * down_stride);
    filter_all(at, in_stride, row0, vt, down_stride, down, down_stride);
    filter_across(down, down_stride, out_h, col0, ht, ch, dst, dst_stride);
  }
  trim_scratch();
}

}  // namespace s2ccrop
