// The C++ kernels of dense_kernels.py (issue 27, items 2 and 5): a DenseNet block's passes over
// its shared buffers, fused. Built at run time by torch.utils.cpp_extension (ninja, a C++
// compiler); every kernel computes what the straightforward model does, checked in float64 by
// benchmarks/densenet_shared_statistics.py before it times and by tests/test_dense_kernels.py.
#include <torch/extension.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <immintrin.h>
#include <optional>
#include <type_traits>
#include <vector>

// Calls f with a map's channel count as a compile-time constant where it is one of the widths
// DenseNet-BC-100 and the notebooks' DenseNets use most (a growth rate of 12, a bottleneck of 48),
// so that a pixel's loop over those few channels is unrolled and vectorised instead of run one
// channel at a time; any other count runs the same code with the count known at run time.
template <typename F>
static inline void with_width(int64_t k, F&& f) {
  switch (k) {
    case 12: f(std::integral_constant<int64_t, 12>{}); break;
    case 48: f(std::integral_constant<int64_t, 48>{}); break;
    default: f(k);
  }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
// On a CPU with AVX512 a wide row of float or bf16 channels (the affine-ReLU passes over a
// layer's input) runs 16 channels at a time, its last (n % 16) under a mask: the compiler's own
// vectorised loops left up to 31 of them to scalar code, which took a third of the bottleneck's
// backward kernel at DenseNet-BC-100's widths (24 + 12 i). bf16 is rounded as c10::BFloat16
// rounds (to nearest even, NaN to 0x7FC0), so the results are the plain loops' to the bit. The
// 12-channel rows of the maps stay the compiler's: under a mask (12 of 16 lanes) they ran at
// half its speed on Zen 4.
#define ROWS_AVX512 1
static inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
static inline __m512 load16(const c10::BFloat16* p, __mmask16 m) {
  const __m256i half = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}
static inline void store16(float* p, __m512 v, __mmask16 m) { _mm512_mask_storeu_ps(p, m, v); }
static inline void store16(c10::BFloat16* p, __m512 v, __mmask16 m) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd,
                                                  _mm512_set1_epi32(0x7FFF))), 16);
  r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), r,
                              _mm512_set1_epi32(0x7FC0));
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(r));
}
static inline __m512 relu_where(__m512 test, __m512 v) {  // v where test > 0, else 0
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(test, _mm512_setzero_ps(), _CMP_GT_OQ), v);
}
// f(c, mask) for channels [c, c + 16) of n: whole blocks with a constant full mask, which the
// compiler turns into plain loads and stores (faster than masked ones on Zen 4), then the last
// channels under a mask.
template <typename K, typename F>
static inline void by16(K n, F&& f) {
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) f(c, __mmask16(0xFFFF));
  if (c < n) f(c, __mmask16((1u << (n - c)) - 1));
}

// Whether a row of T with math type M runs in the AVX512 code above.
template <typename T, typename M>
constexpr bool vector_rows() {
  return std::is_same_v<M, float> &&
         (std::is_same_v<T, float> || std::is_same_v<T, c10::BFloat16>);
}
#endif

// One pixel's channels [start, C) of a channels-last buffer; the pointers never overlap. The
// arithmetic is in M (float for a bf16 buffer), the affine parameters are M too.
template <typename T, typename M, typename K = int64_t>
static inline void affine_relu_row(const T* __restrict__ x, const M* __restrict__ w,
                                   const M* __restrict__ b, T* __restrict__ out, K n) {
#ifdef ROWS_AVX512
  if constexpr (vector_rows<T, M>()) {
    by16(n, [&](int64_t c, __mmask16 m) {
      const __m512 v = _mm512_fmadd_ps(load16(x + c, m), load16(w + c, m), load16(b + c, m));
      store16(out + c, relu_where(v, v), m);
    });
    return;
  }
#endif
  for (int64_t c = 0; c < n; ++c) {
    M v = M(x[c]) * w[c] + b[c];
    out[c] = T(v > M(0) ? v : M(0));
  }
}

template <typename T, typename M>
static inline void affine_relu_backward_row(
    const T* __restrict__ x, const T* __restrict__ grad, const M* __restrict__ w,
    const M* __restrict__ b, T* __restrict__ grad_x, M* __restrict__ sum_wx,
    M* __restrict__ sum_b, int64_t n) {
#ifdef ROWS_AVX512
  if constexpr (vector_rows<T, M>()) {
    by16(n, [&](int64_t c, __mmask16 m) {
      const __m512 xc = load16(x + c, m), wc = load16(w + c, m);
      const __m512 g = relu_where(_mm512_fmadd_ps(xc, wc, load16(b + c, m)), load16(grad + c, m));
      store16(grad_x + c, _mm512_fmadd_ps(g, wc, load16(grad_x + c, m)), m);
      store16(sum_wx + c, _mm512_fmadd_ps(g, xc, load16(sum_wx + c, m)), m);
      store16(sum_b + c, _mm512_add_ps(load16(sum_b + c, m), g), m);
    });
    return;
  }
#endif
  for (int64_t c = 0; c < n; ++c) {
    M xc = M(x[c]);
    M g = (xc * w[c] + b[c]) > M(0) ? M(grad[c]) : M(0);
    grad_x[c] = T(M(grad_x[c]) + g * w[c]);
    sum_wx[c] += g * xc;
    sum_b[c] += g;
  }
}

static void check(const torch::Tensor& buffer) {
  TORCH_CHECK(buffer.dim() == 4 && buffer.is_contiguous(at::MemoryFormat::ChannelsLast),
              "the buffer must be a channels-last (N, C, H, W) tensor");
}

static torch::Tensor in_math_type(const torch::Tensor& parameter, const torch::Tensor& buffer) {
  return parameter.to(at::toOpMathType(buffer.scalar_type())).contiguous();
}

// What a backward pass over a buffer checks first; returns the gradient in channels-last.
static torch::Tensor checked_gradient(const torch::Tensor& grad, const torch::Tensor& buffer,
                                      const torch::Tensor& grad_buffer) {
  check(buffer);
  check(grad_buffer);
  TORCH_CHECK(grad.scalar_type() == buffer.scalar_type() &&
              grad_buffer.scalar_type() == buffer.scalar_type(),
              "the gradient, the buffer and its gradient must share one dtype");
  return grad.contiguous(at::MemoryFormat::ChannelsLast);
}

// Sums over pixels per channel, in chunks whose partial sums are added in double at the end (the
// same for any thread count): row(p, sums) adds pixel p's terms into sums[0, terms * k).
template <typename M, typename Row>
static std::vector<double> channel_sums(int64_t pixels, int64_t k, int64_t terms, Row row) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(256, pixels / 256));
  std::vector<M> partial(chunks * terms * k, M(0));
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t j = first; j < last; ++j)
      for (int64_t p = pixels * j / chunks; p < pixels * (j + 1) / chunks; ++p)
        row(p, partial.data() + j * terms * k);
  });
  std::vector<double> total(terms * k, 0.0);
  for (int64_t j = 0; j < chunks; ++j)
    for (int64_t i = 0; i < terms * k; ++i) total[i] += double(partial[j * terms * k + i]);
  return total;
}

torch::Tensor affine_relu(torch::Tensor buffer, int64_t start, torch::Tensor w, torch::Tensor b) {
  check(buffer);
  const int64_t N = buffer.size(0), C = buffer.size(1), H = buffer.size(2), W = buffer.size(3);
  const int64_t n = C - start, pixels = N * H * W;
  auto out = torch::empty({N, n, H, W},
                          buffer.options().memory_format(at::MemoryFormat::ChannelsLast));
  w = in_math_type(w, buffer); b = in_math_type(b, buffer);
  AT_DISPATCH_FLOATING_TYPES_AND(at::ScalarType::BFloat16, buffer.scalar_type(), "affine_relu",
                                 [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* x = buffer.data_ptr<scalar_t>() + start;
    scalar_t* o = out.data_ptr<scalar_t>();
    const math_t* wp = w.data_ptr<math_t>();
    const math_t* bp = b.data_ptr<math_t>();
    at::parallel_for(0, pixels, 16, [&](int64_t first, int64_t last) {
      for (int64_t p = first; p < last; ++p)
        affine_relu_row<scalar_t, math_t>(x + p * C, wp, bp, o + p * n, n);
    });
  });
  return out;
}

std::vector<torch::Tensor> affine_relu_backward(torch::Tensor grad, torch::Tensor buffer,
    int64_t start, torch::Tensor w, torch::Tensor b, torch::Tensor grad_buffer) {
  grad = checked_gradient(grad, buffer, grad_buffer);
  const auto parameter_type = w.scalar_type();
  w = in_math_type(w, buffer); b = in_math_type(b, buffer);
  const int64_t N = buffer.size(0), C = buffer.size(1), H = buffer.size(2), W = buffer.size(3);
  const int64_t n = C - start, pixels = N * H * W;
  auto total = torch::empty({2, n}, w.options().dtype(torch::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND(at::ScalarType::BFloat16, buffer.scalar_type(),
                                 "affine_relu_backward", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* x = buffer.data_ptr<scalar_t>() + start;
    scalar_t* gx = grad_buffer.data_ptr<scalar_t>() + start;
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const math_t* wp = w.data_ptr<math_t>();
    const math_t* bp = b.data_ptr<math_t>();
    const auto sums = channel_sums<math_t>(pixels, n, 2, [&](int64_t p, math_t* sum) {
      affine_relu_backward_row<scalar_t, math_t>(x + p * C, g + p * n, wp, bp, gx + p * C, sum,
                                                 sum + n, n);
    });
    std::copy(sums.begin(), sums.end(), total.data_ptr<double>());
  });
  total = total.to(parameter_type);
  return {total[0], total[1]};
}

// One pixel's k channels; the pointers never overlap (restrict lets the loops vectorise).
template <typename T, typename M, typename K>
static inline void add_row(const T* __restrict__ x, M* __restrict__ sum, K k) {
  for (int64_t c = 0; c < k; ++c) sum[c] += M(x[c]);
}

template <typename T, typename M, typename K>
static inline void add_squares_row(const T* __restrict__ x, const M* __restrict__ mean,
                                   M* __restrict__ sum, K k) {
  for (int64_t c = 0; c < k; ++c) {
    const M d = M(x[c]) - mean[c];
    sum[c] += d * d;
  }
}

// Batch statistics, as BatchNorm normalises in training (mean and 1/std of the biased variance),
// with each pixel read from memory once: in parts of `size` pixels (the last one shorter), each
// part's mean and then its squared deviations from that mean while the part is in cache. The
// parts' moments are combined in double (the pairwise formula of Chan et al.), the same for any
// thread count.
template <typename T, typename M, typename K>
static inline void part_moments(const T* x, int64_t rows, K k, M* moments) {
  M* mean = moments;
  M* squares = moments + k;
  std::fill(moments, moments + 2 * k, M(0));
  for (int64_t r = 0; r < rows; ++r) add_row<T, M, K>(x + r * k, mean, k);
  for (int64_t c = 0; c < k; ++c) mean[c] /= M(rows);
  for (int64_t r = 0; r < rows; ++r) add_squares_row<T, M, K>(x + r * k, mean, squares, k);
}

// moments: per part, its mean (k), then its sum of squared deviations (k).
template <typename M>
static void combine_moments(const M* moments, int64_t pixels, int64_t size, int64_t k,
                            double eps, M* mean, M* inv_std) {
  const int64_t parts = (pixels + size - 1) / size;
  auto count = [&](int64_t j) { return double(std::min(pixels, (j + 1) * size) - j * size); };
  std::vector<double> total(k, 0.0), squares(k, 0.0);
  for (int64_t j = 0; j < parts; ++j)
    for (int64_t c = 0; c < k; ++c) total[c] += count(j) * moments[j * 2 * k + c];
  for (int64_t c = 0; c < k; ++c) total[c] /= double(pixels);
  for (int64_t j = 0; j < parts; ++j)
    for (int64_t c = 0; c < k; ++c) {
      const double d = double(moments[j * 2 * k + c]) - total[c];
      squares[c] += double(moments[j * 2 * k + k + c]) + count(j) * d * d;
    }
  for (int64_t c = 0; c < k; ++c) {
    mean[c] = M(total[c]);
    inv_std[c] = M(1.0 / std::sqrt(squares[c] / double(pixels) + eps));
  }
}

// A channels-last map's batch statistics, in parts of 256 pixels.
template <typename T, typename M>
static void batch_statistics(const T* x, int64_t pixels, int64_t k, double eps, M* mean,
                             M* inv_std) {
  constexpr int64_t size = 256;
  const int64_t parts = (pixels + size - 1) / size;
  std::vector<M> moments(parts * 2 * k);
  with_width(k, [&](auto K) {
    at::parallel_for(0, parts, 1, [&](int64_t first, int64_t last) {
      for (int64_t j = first; j < last; ++j)
        part_moments<T, M>(x + j * size * K, std::min(size, pixels - j * size), K,
                           moments.data() + j * 2 * K);
    });
  });
  combine_moments(moments.data(), pixels, size, k, eps, mean, inv_std);
}

// The same pass fused with the layer's first convolution (1x1, no bias), in tiles of TILE
// pixels: a tile's ReLU(w * x + b) is made in cache and multiplied at once, never written out,
// and the backward pass makes it again instead of reading it. The products run in the buffer's
// dtype, as autocast runs the convolution.
constexpr int64_t TILE = 1024;

// A bf16 buffer's tiles hold twice the pixels, as many bytes a channel as fp32's: a bf16
// DenseNet-BC-100 step ran 1.03x as fast as with 1,024 by the median of 16 pairs of alternating
// processes, 0.97 to 1.08x (AVX512-BF16 CPU, 2026-12-07).
template <typename T>
constexpr int64_t tile_pixels() { return sizeof(T) == 2 ? 2 * TILE : TILE; }

// Asks for a pixel's row of a wide buffer AHEAD pixels early: beside other streams, the hardware
// prefetcher does not follow a stride of hundreds of bytes (measured: a pass 4x slower).
constexpr int64_t AHEAD = 16;

template <int Write = 0, typename T>
static inline void prefetch_row(const T* row, int64_t n) {
  const char* bytes = reinterpret_cast<const char*>(row);
  for (int64_t b = 0; b < n * int64_t(sizeof(T)); b += 64) __builtin_prefetch(bytes + b, Write);
}

// A tile's convolution input, ReLU(w * x + b) for its rows of pixels from p0 on, made in cache.
template <typename T, typename M>
static inline void tile_input(const T* x, int64_t C, int64_t p0, int64_t rows, const M* w,
                              const M* b, T* in, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    prefetch_row(x + (p0 + r + AHEAD) * C, n);
    affine_relu_row<T, M>(x + (p0 + r) * C, w, b, in + r * n, n);
  }
}

static torch::Tensor rows_of(void* data, int64_t rows, int64_t columns, const torch::Tensor& like) {
  return torch::from_blob(data, {rows, columns}, like.options());
}

static torch::Tensor weight_matrix(const torch::Tensor& weight, const torch::Tensor& buffer,
                                   int64_t n) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == n && weight.size(2) == 1 &&
              weight.size(3) == 1, "the convolution must be 1x1 from the layer's ", n,
              " channels");
  return weight.reshape({weight.size(0), n}).to(buffer.scalar_type()).contiguous();
}

// Returns the output; with eps, also its batch mean and 1/std (the math type), taken from each
// tile while it is in cache, for the BatchNorm that follows a bottleneck's convolution.
std::vector<torch::Tensor> affine_relu_conv1x1(torch::Tensor buffer, int64_t start,
    torch::Tensor w, torch::Tensor b, torch::Tensor weight, std::optional<double> eps) {
  check(buffer);
  const int64_t N = buffer.size(0), C = buffer.size(1), H = buffer.size(2), W = buffer.size(3);
  const int64_t n = C - start, pixels = N * H * W, o = weight.size(0);
  const auto transposed = weight_matrix(weight, buffer, n).t();  // n x o
  auto out = torch::empty({N, o, H, W},
                          buffer.options().memory_format(at::MemoryFormat::ChannelsLast));
  w = in_math_type(w, buffer); b = in_math_type(b, buffer);
  auto statistics = torch::empty({2, o}, w.options());
  AT_DISPATCH_FLOATING_TYPES_AND(at::ScalarType::BFloat16, buffer.scalar_type(),
                                 "affine_relu_conv1x1", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const int64_t tile = tile_pixels<scalar_t>(), tiles = (pixels + tile - 1) / tile;
    auto moments = torch::empty({eps ? tiles : 0, 2, o}, w.options());
    const scalar_t* x = buffer.data_ptr<scalar_t>() + start;
    scalar_t* o_ptr = out.data_ptr<scalar_t>();
    const math_t* wp = w.data_ptr<math_t>();
    const math_t* bp = b.data_ptr<math_t>();
    math_t* tile_moments = moments.data_ptr<math_t>();
    at::parallel_for(0, tiles, 1, [&](int64_t first, int64_t last) {
      auto input = torch::empty({tile, n}, buffer.options());
      scalar_t* in = input.data_ptr<scalar_t>();
      for (int64_t t = first; t < last; ++t) {
        const int64_t p0 = t * tile, rows = std::min(tile, pixels - p0);
        tile_input<scalar_t, math_t>(x, C, p0, rows, wp, bp, in, n);
        auto result = rows_of(o_ptr + p0 * o, rows, o, out);
        at::mm_out(result, input.narrow(0, 0, rows), transposed);
        if (eps) with_width(o, [&](auto K) {
          part_moments<scalar_t, math_t>(o_ptr + p0 * K, rows, K, tile_moments + t * 2 * K);
        });
      }
    });
    if (eps) {
      math_t* mean = statistics.data_ptr<math_t>();
      combine_moments(tile_moments, pixels, tile, o, *eps, mean, mean + o);
    }
  });
  if (!eps) return {out};
  return {out, statistics[0], statistics[1]};
}

// The backward pass of affine_relu_conv1x1, tile by tile; tile_gradient(p0, rows, scratch) gives
// the output's gradient for a tile's rows (o channels each), in place or made in scratch. Adds the
// buffer's gradient into grad_buffer; returns the gradients of the convolution's weight, w and b.
template <typename T, typename TileGradient>
static std::vector<torch::Tensor> conv1x1_backward_tiles(const torch::Tensor& buffer,
    int64_t start, torch::Tensor w, torch::Tensor b, const torch::Tensor& weight,
    torch::Tensor& grad_buffer, TileGradient tile_gradient) {
  using M = at::opmath_type<T>;
  const auto parameter_type = w.scalar_type();
  const int64_t N = buffer.size(0), C = buffer.size(1), H = buffer.size(2), W = buffer.size(3);
  const int64_t n = C - start, pixels = N * H * W, o = weight.size(0);
  const auto matrix = weight_matrix(weight, buffer, n);  // o x n
  w = in_math_type(w, buffer); b = in_math_type(b, buffer);
  const int64_t tile = tile_pixels<T>(), tiles = (pixels + tile - 1) / tile;
  // per-tile products and sums (added in double at the end): the same for any thread count
  auto weight_partial = torch::empty({tiles, o, n}, w.options());
  auto partial = torch::zeros({tiles, 2, n}, w.options());
  const T* x = buffer.data_ptr<T>() + start;
  T* gx = grad_buffer.data_ptr<T>() + start;
  const M* wp = w.data_ptr<M>();
  const M* bp = b.data_ptr<M>();
  M* sums = partial.data_ptr<M>();
  at::parallel_for(0, tiles, 1, [&](int64_t first, int64_t last) {
    auto input = torch::empty({tile, n}, buffer.options());
    auto grad_input = torch::empty({tile, n}, buffer.options());
    auto scratch = torch::empty({tile, o}, buffer.options());
    T* in = input.data_ptr<T>();
    const T* gin = grad_input.data_ptr<T>();
    for (int64_t t = first; t < last; ++t) {
      const int64_t p0 = t * tile, rows = std::min(tile, pixels - p0);
      tile_input<T, M>(x, C, p0, rows, wp, bp, in, n);
      auto g_rows = rows_of(const_cast<T*>(tile_gradient(p0, rows, scratch.data_ptr<T>())), rows,
                            o, buffer);
      auto in_rows = input.narrow(0, 0, rows);
      auto weight_slot = weight_partial[t];
      if constexpr (std::is_same_v<T, M>)
        at::mm_out(weight_slot, g_rows.t(), in_rows);
      else  // a bf16 product per tile, summed in fp32
        weight_slot.copy_(at::mm(g_rows.t(), in_rows));
      auto grad_in_rows = grad_input.narrow(0, 0, rows);
      at::mm_out(grad_in_rows, g_rows, matrix);
      M* sum = sums + t * 2 * n;
      for (int64_t r = 0; r < rows; ++r) {
        prefetch_row(x + (p0 + r + AHEAD) * C, n);
        prefetch_row<1>(gx + (p0 + r + AHEAD) * C, n);
        affine_relu_backward_row<T, M>(x + (p0 + r) * C, gin + r * n, wp, bp, gx + (p0 + r) * C,
                                       sum, sum + n, n);
      }
    }
  });
  auto total = partial.to(torch::kDouble).sum(0).to(parameter_type);
  auto grad_weight = weight_partial.to(torch::kDouble).sum(0).to(weight.scalar_type());
  return {grad_weight.view(weight.sizes()), total[0], total[1]};
}

std::vector<torch::Tensor> affine_relu_conv1x1_backward(torch::Tensor grad, torch::Tensor buffer,
    int64_t start, torch::Tensor w, torch::Tensor b, torch::Tensor weight,
    torch::Tensor grad_buffer) {
  grad = checked_gradient(grad, buffer, grad_buffer);
  const int64_t o = weight.size(0);
  std::vector<torch::Tensor> grads;
  AT_DISPATCH_FLOATING_TYPES_AND(at::ScalarType::BFloat16, buffer.scalar_type(),
                                 "affine_relu_conv1x1_backward", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    grads = conv1x1_backward_tiles<scalar_t>(buffer, start, w, b, weight, grad_buffer,
        [&](int64_t p0, int64_t, scalar_t*) { return g + p0 * o; });
  });
  return grads;
}

// From a normalisation's backward sums over pixels (of g, then of g * (x - mean)): the mean of
// g and the slope inv_std^2 * mean(g * (x - mean)), per channel, as BatchNorm's backward uses them.
template <typename M>
static void normalisation_gradient_terms(const std::vector<double>& sums, const M* inv_std,
                                         int64_t pixels, int64_t k, std::vector<M>& mean_g,
                                         std::vector<M>& slope) {
  mean_g.resize(k);
  slope.resize(k);
  for (int64_t c = 0; c < k; ++c) {
    mean_g[c] = M(sums[c] / pixels);
    slope[c] = M(double(inv_std[c]) * inv_std[c] * sums[k + c] / pixels);
  }
}

template <typename T, typename M, typename K = int64_t>
static inline void place_row(const T* __restrict__ x, const M* __restrict__ mean,
                             const M* __restrict__ inv_std, T* __restrict__ raw,
                             T* __restrict__ normalised, K k) {
  for (int64_t c = 0; c < k; ++c) {
    if (raw) raw[c] = x[c];
    normalised[c] = T((M(x[c]) - mean[c]) * inv_std[c]);
  }
}

template <typename T, typename M, typename K = int64_t>
static inline void gradient_sums_row(const T* __restrict__ grad, const T* __restrict__ x,
                                     const M* __restrict__ mean, T* __restrict__ copy,
                                     M* __restrict__ sum, K k) {
  for (int64_t c = 0; c < k; ++c) {
    const M g = M(grad[c]), d = M(x[c]) - mean[c];  // x read before copy is written: the two
    sum[c] += g;                                      // share their offsets within a page
    sum[k + c] += g * d;
    copy[c] = grad[c];
  }
}

template <typename T, typename M, typename K = int64_t>
static inline void gradient_row(const T* __restrict__ x, const T* __restrict__ grad_raw,
                                const M* __restrict__ mean, const M* __restrict__ inv_std,
                                const M* __restrict__ mean_g, const M* __restrict__ slope,
                                T* __restrict__ out, K k) {
  for (int64_t c = 0; c < k; ++c)
    out[c] = T(inv_std[c] * (M(out[c]) - mean_g[c] - (M(x[c]) - mean[c]) * slope[c]) +
               (grad_raw ? M(grad_raw[c]) : M(0)));
}

// A new map (k channels) into the block's buffers at channels [first, first + k): as it is into
// raw (where the block keeps its output), and normalised with its batch statistics into
// normalised. Returns the map as the backward pass reads it (channels-last), its mean and 1/std
// (of the biased variance, as BatchNorm normalises), the two in the math type (fp32 for bf16
// maps, as BatchNorm keeps them).
std::vector<torch::Tensor> place_map(torch::Tensor map, std::optional<torch::Tensor> raw,
                                     torch::Tensor normalised, int64_t first, double eps) {
  check(normalised);
  if (raw) check(*raw);
  map = map.to(normalised.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t k = map.size(1), C = normalised.size(1);
  const int64_t pixels = map.size(0) * map.size(2) * map.size(3);
  TORCH_CHECK(first >= 0 && first + k <= C, "the map does not fit the buffer there");
  auto statistics = torch::empty({2, k}, map.options().dtype(at::toOpMathType(map.scalar_type())));
  AT_DISPATCH_FLOATING_TYPES_AND(at::ScalarType::BFloat16, map.scalar_type(), "place_map", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* x = map.data_ptr<scalar_t>();
    math_t* mean = statistics.data_ptr<math_t>();
    math_t* inv_std = mean + k;
    batch_statistics(x, pixels, k, eps, mean, inv_std);
    scalar_t* r = raw ? raw->data_ptr<scalar_t>() + first : nullptr;
    scalar_t* z = normalised.data_ptr<scalar_t>() + first;
    with_width(k, [&](auto K) {
      at::parallel_for(0, pixels, 256, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          if (r) prefetch_row<1>(r + (p + AHEAD) * C, K);
          prefetch_row<1>(z + (p + AHEAD) * C, K);
          place_row<scalar_t, math_t>(x + p * K, mean, inv_std, r ? r + p * C : nullptr,
                                      z + p * C, K);
        }
      });
    });
  });
  return {map, statistics[0], statistics[1]};
}

// The output's scale and shift per channel: ReLU(scale * x + shift). Its backward pass makes the
// same numbers to know where the ReLU passed, instead of reading the output.
template <typename M>
static void batchnorm_affine(const M* mean, const M* inv_std, const M* w, const M* b, int64_t k,
                             std::vector<M>& scale, std::vector<M>& shift) {
  scale.resize(k);
  shift.resize(k);
  for (int64_t c = 0; c < k; ++c) {
    scale[c] = w[c] * inv_std[c];
    shift[c] = b[c] - scale[c] * mean[c];
  }
}

// A bottleneck's BatchNorm-ReLU after its 1x1 convolution, in training, with the batch statistics
// that affine_relu_conv1x1 took: one pass over the map.
torch::Tensor batchnorm_relu(torch::Tensor x, torch::Tensor mean, torch::Tensor inv_std,
                             torch::Tensor weight, torch::Tensor bias) {
  x = x.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t k = x.size(1), pixels = x.size(0) * x.size(2) * x.size(3);
  auto y = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
  AT_DISPATCH_FLOATING_TYPES_AND(at::ScalarType::BFloat16, x.scalar_type(), "batchnorm_relu",
                                 [&] {
    using math_t = at::opmath_type<scalar_t>;
    const auto m = in_math_type(mean, x), s = in_math_type(inv_std, x);
    const auto wm = in_math_type(weight, x), bm = in_math_type(bias, x);
    std::vector<math_t> scale, shift;
    batchnorm_affine(m.data_ptr<math_t>(), s.data_ptr<math_t>(), wm.data_ptr<math_t>(),
                     bm.data_ptr<math_t>(), k, scale, shift);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    with_width(k, [&](auto K) {
      at::parallel_for(0, pixels, 256, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p)
          affine_relu_row<scalar_t, math_t>(xp + p * K, scale.data(), shift.data(), yp + p * K,
                                            K);
      });
    });
  });
  return y;
}

template <typename T, typename M, typename K = int64_t>
static inline void batchnorm_relu_sums_row(const T* __restrict__ grad, const T* __restrict__ x,
                                           const M* __restrict__ scale,
                                           const M* __restrict__ shift,
                                           const M* __restrict__ mean, M* __restrict__ sum,
                                           K k) {
  for (int64_t c = 0; c < k; ++c) {
    const M v = M(x[c]);
    const M g = v * scale[c] + shift[c] > M(0) ? M(grad[c]) : M(0);
    sum[c] += g;
    sum[k + c] += g * (v - mean[c]);
  }
}

template <typename T, typename M, typename K = int64_t>
static inline void batchnorm_relu_backward_row(
    const T* __restrict__ grad, const T* __restrict__ x, const M* __restrict__ scale,
    const M* __restrict__ shift, const M* __restrict__ mean, const M* __restrict__ mean_g,
    const M* __restrict__ slope, T* __restrict__ grad_x, K k) {
  for (int64_t c = 0; c < k; ++c) {
    const M v = M(x[c]);
    const M g = v * scale[c] + shift[c] > M(0) ? M(grad[c]) : M(0);
    grad_x[c] = T(scale[c] * (g - mean_g[c] - (v - mean[c]) * slope[c]));
  }
}

// The backward pass of a whole bottleneck up to its second ReLU (affine-ReLU, 1x1 convolution,
// BatchNorm, ReLU), from the gradient of the ReLU's output: one pass for the BatchNorm's sums, then
// the convolution's tiles, each tile's output gradient made in cache from them. Adds the buffer's
// gradient into grad_buffer; returns the gradients of the convolution's weight, w, b, and the
// BatchNorm's weight and bias.
std::vector<torch::Tensor> bottleneck_backward(torch::Tensor grad, torch::Tensor buffer,
    int64_t start, torch::Tensor w, torch::Tensor b, torch::Tensor weight, torch::Tensor inner,
    torch::Tensor mean, torch::Tensor inv_std, torch::Tensor norm_weight,
    torch::Tensor norm_bias, torch::Tensor grad_buffer) {
  grad = checked_gradient(grad, buffer, grad_buffer);
  TORCH_CHECK(inner.is_contiguous(at::MemoryFormat::ChannelsLast) &&
              inner.scalar_type() == buffer.scalar_type(),
              "the convolution's output must be channels-last, in the buffer's dtype");
  TORCH_CHECK(grad.sizes() == inner.sizes() && inner.size(1) == weight.size(0) &&
              inner.size(0) == buffer.size(0) && inner.sizes().slice(2) == buffer.sizes().slice(2),
              "the gradient and the convolution's output must be the convolution's output's "
              "shape, the buffer's pixels and the convolution's output channels");
  const auto parameter_type = norm_weight.scalar_type();
  const int64_t k = inner.size(1), pixels = inner.size(0) * inner.size(2) * inner.size(3);
  auto norm_grads = torch::empty({2, k}, in_math_type(norm_weight, buffer).options());
  std::vector<torch::Tensor> grads;
  AT_DISPATCH_FLOATING_TYPES_AND(at::ScalarType::BFloat16, buffer.scalar_type(),
                                 "bottleneck_backward", [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const scalar_t* xp = inner.data_ptr<scalar_t>();
    const auto m = in_math_type(mean, buffer), s = in_math_type(inv_std, buffer);
    const auto wm = in_math_type(norm_weight, buffer), bm = in_math_type(norm_bias, buffer);
    const math_t* mp = m.data_ptr<math_t>();
    const math_t* sp = s.data_ptr<math_t>();
    std::vector<math_t> scale, shift;
    batchnorm_affine(mp, sp, wm.data_ptr<math_t>(), bm.data_ptr<math_t>(), k, scale, shift);
    std::vector<double> sums;
    with_width(k, [&](auto K) {
      sums = channel_sums<math_t>(pixels, K, 2, [&](int64_t p, math_t* sum) {
        batchnorm_relu_sums_row<scalar_t, math_t>(g + p * K, xp + p * K, scale.data(),
                                                  shift.data(), mp, sum, K);
      });
    });
    std::vector<math_t> mean_g, slope;
    normalisation_gradient_terms(sums, sp, pixels, k, mean_g, slope);
    math_t* out = norm_grads.data_ptr<math_t>();
    for (int64_t c = 0; c < k; ++c) {
      out[c] = math_t(sums[k + c] * sp[c]);  // the weight's gradient: sum of g * x_hat
      out[k + c] = math_t(sums[c]);           // the bias's
    }
    grads = conv1x1_backward_tiles<scalar_t>(buffer, start, w, b, weight, grad_buffer,
        [&](int64_t p0, int64_t rows, scalar_t* scratch) {
          with_width(k, [&](auto K) {
            for (int64_t r = 0; r < rows; ++r)
              batchnorm_relu_backward_row<scalar_t, math_t>(
                  g + (p0 + r) * K, xp + (p0 + r) * K, scale.data(), shift.data(), mp,
                  mean_g.data(), slope.data(), scratch + r * K, K);
          });
          return scratch;
        });
  });
  auto converted = norm_grads.to(parameter_type);
  grads.push_back(converted[0]);
  grads.push_back(converted[1]);
  return grads;
}

// The weight gradient of a 3x3 convolution (stride 1, padding 1) of float or double maps:
// oneDNN's ran at 35 to 50 GFLOP/s on the AVX2-only CPU, its forward pass at 70, its input
// gradient at 110 to 140. In
// tiles of whole images, each input pixel is given the gradients of the nine output pixels that
// read it (9 x o channels, made in cache), and the tile's input is multiplied by them at once
// (MKL); the tiles' products are added in double, the same for any thread count.
torch::Tensor conv3x3_weight_gradient(torch::Tensor grad, torch::Tensor input) {
  TORCH_CHECK(grad.dim() == 4 && input.dim() == 4 && grad.size(0) == input.size(0) &&
              grad.sizes().slice(2) == input.sizes().slice(2) &&
              grad.scalar_type() == input.scalar_type() &&
              (input.scalar_type() == torch::kFloat || input.scalar_type() == torch::kDouble),
              "the gradient and the input must be float or double maps of one size");
  grad = grad.contiguous(at::MemoryFormat::ChannelsLast);
  input = input.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = input.size(0), k = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t o = grad.size(1);
  const int64_t per = std::max<int64_t>(1, TILE / (H * W)), tiles = (N + per - 1) / per;
  auto partial = torch::empty({tiles, k, 9 * o}, input.options());  // column tap * o + c
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "conv3x3_weight_gradient", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    scalar_t* x = input.data_ptr<scalar_t>();
    at::parallel_for(0, tiles, 1, [&](int64_t first, int64_t last) {
      auto readers = torch::empty({per * H * W, 9 * o}, input.options());
      scalar_t* z = readers.data_ptr<scalar_t>();
      for (int64_t t = first; t < last; ++t) {
        const int64_t images = std::min(per, N - t * per), p0 = t * per * H * W;
        const int64_t rows = images * H * W;
        const scalar_t* tile_grad = g + p0 * o;
        scalar_t* share = z;
        for (int64_t i = 0; i < images; ++i)
          for (int64_t h = 0; h < H; ++h)
            for (int64_t w = 0; w < W; ++w)
              for (int tap = 0; tap < 9; ++tap, share += o) {  // tap (kh, kw) of output pixel
                const int64_t hh = h + 1 - tap / 3, ww = w + 1 - tap % 3;  // (hh, ww) reads (h, w)
                if (hh >= 0 && hh < H && ww >= 0 && ww < W) {
                  const scalar_t* row = tile_grad + ((i * H + hh) * W + ww) * o;
                  std::copy(row, row + o, share);
                } else {
                  std::fill(share, share + o, scalar_t(0));
                }
              }
        auto slot = partial[t];
        at::mm_out(slot, rows_of(x + p0 * k, rows, k, input).t(), readers.narrow(0, 0, rows));
      }
    });
  });
  return partial.sum(0, /*keepdim=*/false, torch::kDouble).reshape({k, 3, 3, o})
      .permute({3, 0, 1, 2}).to(input.scalar_type()).contiguous();
}

// The gradient of a map placed by place_map: through its normalisation (as BatchNorm's backward
// in training, with a unit scale) from grad_normalised, plus its share of grad_raw (where the
// block kept its output).
torch::Tensor map_gradient(torch::Tensor grad_normalised, std::optional<torch::Tensor> grad_raw,
                           int64_t first, torch::Tensor map, torch::Tensor mean,
                           torch::Tensor inv_std) {
  check(grad_normalised);
  if (grad_raw) check(*grad_raw);
  TORCH_CHECK(map.is_contiguous(at::MemoryFormat::ChannelsLast) &&
              map.scalar_type() == grad_normalised.scalar_type() &&
              (!grad_raw || grad_raw->scalar_type() == map.scalar_type()),
              "the map must be place_map's, in the buffers' dtype");
  const int64_t k = map.size(1), C = grad_normalised.size(1);
  const int64_t pixels = map.size(0) * map.size(2) * map.size(3);
  auto out = torch::empty_like(map);
  AT_DISPATCH_FLOATING_TYPES_AND(at::ScalarType::BFloat16, map.scalar_type(), "map_gradient",
                                 [&] {
    using math_t = at::opmath_type<scalar_t>;
    const scalar_t* x = map.data_ptr<scalar_t>();
    const scalar_t* gz = grad_normalised.data_ptr<scalar_t>() + first;
    const scalar_t* gr = grad_raw ? grad_raw->data_ptr<scalar_t>() + first : nullptr;
    const auto m = in_math_type(mean, map), s = in_math_type(inv_std, map);
    const math_t* mp = m.data_ptr<math_t>();
    const math_t* sp = s.data_ptr<math_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    // the first pass also copies the map's gradient out of the wide buffer (read there once)
    with_width(k, [&](auto K) {
      const auto sums = channel_sums<math_t>(pixels, K, 2, [&](int64_t p, math_t* sum) {
        prefetch_row(gz + (p + AHEAD) * C, K);
        gradient_sums_row<scalar_t, math_t>(gz + p * C, x + p * K, mp, o + p * K, sum, K);
      });
      std::vector<math_t> mean_g, slope;
      normalisation_gradient_terms(sums, sp, pixels, K, mean_g, slope);
      at::parallel_for(0, pixels, 256, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          if (gr) prefetch_row(gr + (p + AHEAD) * C, K);
          gradient_row<scalar_t, math_t>(x + p * K, gr ? gr + p * C : nullptr, mp, sp,
                                         mean_g.data(), slope.data(), o + p * K, K);
        }
      });
    });
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("affine_relu", &affine_relu);
  m.def("affine_relu_backward", &affine_relu_backward);
  m.def("affine_relu_conv1x1", &affine_relu_conv1x1);
  m.def("affine_relu_conv1x1_backward", &affine_relu_conv1x1_backward);
  m.def("place_map", &place_map);
  m.def("map_gradient", &map_gradient);
  m.def("batchnorm_relu", &batchnorm_relu);
  m.def("bottleneck_backward", &bottleneck_backward);
  m.def("conv3x3_weight_gradient", &conv3x3_weight_gradient);
}
