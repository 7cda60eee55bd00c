// guided_sample CUDA kernel (no torch headers; launcher in launchers.h). ONE launch, 1-D grid-stride over
// (row, split) tasks (any B), `splits` blocks per row of at most kChunk elements each; rows select their path
// on device (no host sync, CUDA-graph capturable). Every row's token is written by the last of its blocks.
//
// Unfiltered rows (greedy, or τ > 0 without top-k/top-p): each block scans its slice once (16-byte vector
// loads): online (max, sum) of z and the argmax of z (greedy) or of z/τ + g (Gumbel-max, pruned: s + 17 < best
// cannot win, so its Philox/log is skipped), folded into a packed 64-bit atomicMax (score image << 32 | ~index:
// ties to the smaller index). The last block (atomic counter + threadfence) merges the (max, sum) pairs in
// parallel and writes token and log-prob.
//
// Filtered rows (τ > 0 with 0 < k < V or p < 1), same single pass over the row:
//  1. candidate stage, every block: the images of s = z/τ of its slice go to shared memory; the block writes
//     its top-C (C = kCand / splits) images with their indices, the bound T_c below which it dropped elements
//     (every element not written has image <= T_c; 0: none dropped), its finite count, (max, sum) of z and
//     Σ exp(s − max_c s) in fp64;
//  2. the last block of the row loads the <= kCand candidates into shared memory. T = max_c T_c; every element
//     with image > T is present. top-k: the k-th largest image v_k (radix select over the candidates); exact if
//     v_k > T. top-p: the softmax mass of the kept set (Σ over the candidates when top-k made the kept set
//     complete, else the merged row total), radix descent with fp64 mass histograms to the group v* where the
//     mass from the top reaches p·Z; exact if v* > T (or if nothing was dropped). Then the Gumbel-max over the
//     kept candidates (Philox keyed by the vocabulary index: the same token as the CPU backend).
//  3. exact fallback, only when step 2 cannot decide from the candidates (ties at v_k across a dropped
//     bound, a nucleus wider than the candidates, k > ~kCand): the same block runs the single-block algorithm
//     over the whole row (radix select, mass descent, Gumbel-max; ~10 passes).
// Semantics are those of pyalign/reference/sampling.py: #{s_j > s_i} < k (ties at the k-th value kept),
// Σ_{s_j > s_i} q_j < p over the top-k-kept set (tie groups kept whole), Gumbel-max over the kept set.
#include "common.cuh"

namespace pyalign {
namespace cuda {
namespace {

constexpr int64_t kChunk = 4096;  // max elements per block (shared-memory image buffer of the candidate stage)
constexpr int kCand = 4096;       // candidates per row (all blocks together)

struct RowP {
  float w, tau, p;
  int64_t k, seed, offset;
};

__device__ __forceinline__ RowP row_params(int64_t b, const float* w, const float* tau, const int64_t* top_k,
                                           const float* top_p, const int64_t* rng) {
  return RowP{w[b], tau[b], top_p[b], top_k[b], rng[2 * b], rng[2 * b + 1]};
}

__device__ __forceinline__ bool topk_active(const RowP& r, int64_t V) { return r.k > 0 && r.k < V; }
__device__ __forceinline__ bool is_filtered(const RowP& r, int64_t V) {
  return r.tau > 0.0f && (topk_active(r, V) || r.p < 1.0f);
}

// Per-block record of the row statistics (32 bytes).
struct BlockInfo {
  float zm, zs;       // (max, sum) of z over the slice
  float sm;           // max of s = z/τ over the slice (filtered rows)
  int bad;            // NaN / +inf seen
  double ss;          // Σ exp(s − sm) over the slice (filtered rows)
  unsigned int count;  // candidates written
  unsigned int trunc;  // every dropped element has image <= trunc (0: none dropped)
  unsigned int nfin;   // finite z in the slice
  unsigned int pad;
};

struct __align__(16) Smem {
  union {
    uint32_t chunk_img[kChunk];  // candidate stage
    struct {
      uint32_t img[kCand];
      uint32_t idx[kCand];
    } cand;                      // selection stage (last block)
  };
  SelectScratch sel;
  union {
    typename cub::BlockReduce<MaxSum, kThreads>::TempStorage ms;
    typename cub::BlockReduce<ArgMax, kThreads>::TempStorage am;
    typename cub::BlockReduce<int, kThreads>::TempStorage i;
    typename cub::BlockReduce<unsigned int, kThreads>::TempStorage u;
    typename cub::BlockReduce<double, kThreads>::TempStorage d;
  } red;
  MaxSum ms;
  double dval;
  unsigned int uval, uval2, count, last;
  int ival;
};

// Softmax mass of s relative to max_s, exactly as the CPU backend: exp(double(fl(s − max_s))).
__device__ __forceinline__ double mass(float s, float max_s) { return exp(static_cast<double>(add_rn(s, -max_s))); }

template <typename T>
__device__ __forceinline__ void finalize(const T* zp, const T* zb, int64_t b, int64_t token, MaxSum ms, bool bad,
                                         float w, int64_t* tokens, float* logp) {
  if (bad || ms.m == -PYALIGN_INF || token < 0) {
    tokens[b] = -1;
    logp[b] = __int_as_float(0x7fffffff);
    return;
  }
  int dummy = 0;
  const float z = zval(zp, zb, token, w, dummy);
  tokens[b] = token;
  logp[b] = (z - ms.m) - logf(ms.s);
}

struct UMaxOp {
  __device__ __forceinline__ unsigned int operator()(unsigned int a, unsigned int b) const { return a > b ? a : b; }
};
struct UMinOp {
  __device__ __forceinline__ unsigned int operator()(unsigned int a, unsigned int b) const { return a < b ? a : b; }
};

// Block-wide reductions returning the result to every thread.
__device__ __forceinline__ MaxSum all_maxsum(MaxSum v, Smem& sm) {
  v = cub::BlockReduce<MaxSum, kThreads>(sm.red.ms).Reduce(v, MaxSumOp());
  if (threadIdx.x == 0) sm.ms = v;
  __syncthreads();
  v = sm.ms;
  __syncthreads();
  return v;
}
struct USumOp {
  __device__ __forceinline__ unsigned int operator()(unsigned int a, unsigned int b) const { return a + b; }
};
// Block-wide reduction of an unsigned value with `op`, broadcast to every thread.
template <typename Op>
__device__ __forceinline__ unsigned int all_reduce(unsigned int v, Smem& sm, Op op) {
  v = cub::BlockReduce<unsigned int, kThreads>(sm.red.u).Reduce(v, op);
  if (threadIdx.x == 0) sm.uval = v;
  __syncthreads();
  v = sm.uval;
  __syncthreads();
  return v;
}
__device__ __forceinline__ unsigned int all_sum(unsigned int v, Smem& sm) { return all_reduce(v, sm, USumOp()); }
__device__ __forceinline__ unsigned int all_max(unsigned int v, Smem& sm) { return all_reduce(v, sm, UMaxOp()); }
__device__ __forceinline__ unsigned int all_min(unsigned int v, Smem& sm) { return all_reduce(v, sm, UMinOp()); }
__device__ __forceinline__ double all_dsum(double v, Smem& sm) {
  v = cub::BlockReduce<double, kThreads>(sm.red.d).Sum(v);
  if (threadIdx.x == 0) sm.dval = v;
  __syncthreads();
  v = sm.dval;
  __syncthreads();
  return v;
}
__device__ __forceinline__ ArgMax all_argmax(ArgMax v, Smem& sm) {
  v = cub::BlockReduce<ArgMax, kThreads>(sm.red.am).Reduce(v, ArgMaxOp());
  __syncthreads();
  return v;  // valid in thread 0 only
}

// Gumbel-max draw for index i with score s, pruned against the running best (exact: s + 17 > s + g).
__device__ __forceinline__ void gumbel_candidate(float s, int64_t i, const RowP& rp, ArgMax& am) {
  if (am.i >= 0 && add_rn(s, kGumbelMax) < am.v) return;
  am = argmax_merge(am, ArgMax{add_rn(s, gumbel(rp.seed, rp.offset, static_cast<uint64_t>(i))), i});
}

// Exact single-block filtered sampling over the whole row (the fallback of the candidate path).
template <typename T>
__device__ int64_t filtered_row_exact(const T* zp, const T* zb, int64_t V, const RowP& rp, float max_s,
                                      unsigned int nfin, Smem& sm) {
  auto img_of = [&](int64_t i) -> uint32_t {
    int d = 0;
    const float z = zval(zp, zb, i, rp.w, d);
    return z == -PYALIGN_INF ? 0u : ordered_image(div_rn(z, rp.tau));
  };
  uint32_t thr = 1u;
  if (topk_active(rp, V) && static_cast<uint64_t>(rp.k) < nfin) {
    const SelectResult r = block_select_kth(img_of, V, static_cast<uint32_t>(rp.k), sm.sel);
    if (r.found) {
      thr = r.prefix;
      if (r.exact) {
        unsigned int mn = 0xffffffffu;
        for (int64_t i = threadIdx.x; i < V; i += kThreads) {
          const uint32_t img = img_of(i);
          if (img >= r.prefix && img < mn) mn = img;
        }
        thr = all_min(mn, sm);
      }
    }
  }
  if (rp.p < 1.0f) {
    double z = 0.0;
    for (int64_t i = threadIdx.x; i < V; i += kThreads) {
      const uint32_t img = img_of(i);
      if (img >= thr) z += mass(image_to_float(img), max_s);
    }
    z = all_dsum(z, sm);
    auto mass_of = [&](int64_t i, uint32_t* img, double* m) {
      *img = img_of(i);
      if (*img < thr) return false;
      *m = mass(image_to_float(*img), max_s);
      return true;
    };
    const DescentResult d = block_mass_descent(mass_of, V, static_cast<double>(rp.p) * z, sm.sel);
    if (d.found && d.image > thr) thr = d.image;
  }
  ArgMax am{-PYALIGN_INF, -1};
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const uint32_t img = img_of(i);
    if (img >= thr) gumbel_candidate(image_to_float(img), i, rp, am);
  }
  am = all_argmax(am, sm);
  return am.i;  // thread 0
}

// Selection stage of a filtered row, run by its last block: returns the token in thread 0 (-1: bad row).
template <typename T>
__device__ int64_t filtered_select(const T* zp, const T* zb, int64_t V, const RowP& rp, int splits, int cblk,
                                   const BlockInfo* info, const uint2* cand, MaxSum& zstats, bool& bad_row,
                                   Smem& sm) {
  // merge the per-block statistics
  MaxSum ms{-PYALIGN_INF, 0.0f};
  unsigned int bad = 0, nfin = 0, trunc = 0;
  for (int c = threadIdx.x; c < splits; c += kThreads) {
    const BlockInfo* bi = info + c;
    ms = maxsum_merge(ms, MaxSum{__ldcg(&bi->zm), __ldcg(&bi->zs)});
    bad |= static_cast<unsigned int>(__ldcg(&bi->bad));
    nfin += __ldcg(&bi->nfin);
    const unsigned int t = __ldcg(&bi->trunc);
    trunc = t > trunc ? t : trunc;
  }
  ms = all_maxsum(ms, sm);
  bad = all_max(bad, sm);
  nfin = all_sum(nfin, sm);
  trunc = all_max(trunc, sm);
  zstats = ms;
  bad_row = bad != 0u || ms.m == -PYALIGN_INF;
  if (bad_row) return -1;
  const float max_s = div_rn(ms.m, rp.tau);
  const bool kact = topk_active(rp, V);

  const int64_t slots = static_cast<int64_t>(splits) * cblk;
  if (slots > kCand) return filtered_row_exact(zp, zb, V, rp, max_s, nfin, sm);  // V > kChunk * kCand
  // load the candidates
  if (threadIdx.x == 0) sm.count = 0u;
  __syncthreads();
  PYALIGN_WARP_UNIFORM_FOR(t, slots) {
    bool take = false;
    uint2 e = make_uint2(0u, 0u);
    if (t < slots) {
      const int64_t c = t / cblk, j = t % cblk;
      take = j < static_cast<int64_t>(__ldcg(&info[c].count));
      if (take) e = __ldcg(cand + t);
    }
    const unsigned int slot = warp_append(&sm.count, take);
    if (take) {
      sm.cand.img[slot] = e.x;
      sm.cand.idx[slot] = e.y;
    }
  }
  __syncthreads();
  const int64_t n = sm.count;
  auto img_at = [&](int64_t i) { return sm.cand.img[i]; };

  bool ok = true;
  uint32_t thr = 1u;  // keep every present finite element
  if (kact) {
    if (static_cast<uint64_t>(rp.k) >= nfin) {
      ok = trunc == 0u;
    } else {
      const SelectResult r = block_select_kth(img_at, n, static_cast<uint32_t>(rp.k), sm.sel);
      if (!r.found) {
        ok = false;
      } else {
        uint32_t vk = r.prefix;
        if (r.exact) {
          unsigned int mn = 0xffffffffu;
          for (int64_t i = threadIdx.x; i < n; i += kThreads) {
            const uint32_t img = sm.cand.img[i];
            if (img >= r.prefix && img < mn) mn = img;
          }
          vk = all_min(mn, sm);
        }
        ok = vk > trunc;
        thr = vk;
      }
    }
  }
  if (ok && rp.p < 1.0f) {
    const bool complete = kact || trunc == 0u;  // every element of the kept set is a candidate
    double z;
    if (complete) {
      z = 0.0;
      for (int64_t i = threadIdx.x; i < n; i += kThreads) {
        const uint32_t img = sm.cand.img[i];
        if (img >= thr) z += mass(image_to_float(img), max_s);
      }
      z = all_dsum(z, sm);
    } else {
      z = 0.0;
      for (int c = threadIdx.x; c < splits; c += kThreads) {
        const BlockInfo* bi = info + c;
        if (__ldcg(&bi->nfin) == 0u) continue;
        z += __ldcg(&bi->ss) * exp(static_cast<double>(__ldcg(&bi->sm)) - static_cast<double>(max_s));
      }
      z = all_dsum(z, sm);
    }
    auto mass_of = [&](int64_t i, uint32_t* img, double* m) {
      *img = sm.cand.img[i];
      if (*img < thr) return false;
      *m = mass(image_to_float(*img), max_s);
      return true;
    };
    const DescentResult d = block_mass_descent(mass_of, n, static_cast<double>(rp.p) * z, sm.sel);
    if (d.found) {
      if (d.image <= trunc) ok = false;
      else if (d.image > thr) thr = d.image;
    } else if (!complete) {
      ok = false;
    }
  }
  if (!ok) return filtered_row_exact(zp, zb, V, rp, max_s, nfin, sm);
  ArgMax am{-PYALIGN_INF, -1};
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    const uint32_t img = sm.cand.img[i];
    if (img >= thr) gumbel_candidate(image_to_float(img), sm.cand.idx[i], rp, am);
  }
  am = all_argmax(am, sm);
  return am.i;
}

// Candidate stage of one (filtered row, slice) task: writes the block's BlockInfo fields and candidates.
template <typename T>
__device__ void filtered_candidates(const T* zp, const T* zb, int64_t lo, int64_t hi, const RowP& rp, int cblk,
                                    BlockInfo* bi, uint2* out, Smem& sm) {
  const int64_t n = hi - lo;
  MaxSum ms{-PYALIGN_INF, 0.0f};
  int bad = 0;
  unsigned int nfin = 0;
  for_each_z(zp, zb, lo, hi, rp.w, bad, [&](int64_t i, float z) {
    uint32_t img = 0u;
    if (z != -PYALIGN_INF) {
      ms = maxsum_add(ms, z);
      img = ordered_image(div_rn(z, rp.tau));
      ++nfin;
    }
    sm.chunk_img[i - lo] = img;
  });
  __syncthreads();
  ms = all_maxsum(ms, sm);
  nfin = all_sum(nfin, sm);
  const unsigned int anybad = all_max(static_cast<unsigned int>(bad), sm);
  const float msb = ms.m == -PYALIGN_INF ? -PYALIGN_INF : div_rn(ms.m, rp.tau);
  double ss = 0.0;
  if (nfin > 0u && !anybad) {
    for (int64_t j = threadIdx.x; j < n; j += kThreads) {
      const uint32_t img = sm.chunk_img[j];
      if (img != 0u) ss += static_cast<double>(expf(image_to_float(img) - msb));
    }
  }
  ss = all_dsum(ss, sm);
  // top-cblk images of the slice
  unsigned int trunc = 0u;
  if (threadIdx.x == 0) sm.count = 0u;
  __syncthreads();
  if (nfin <= static_cast<unsigned int>(cblk) || anybad) {
    if (!anybad) {
      PYALIGN_WARP_UNIFORM_FOR(j, n) {
        const uint32_t img = j < n ? sm.chunk_img[j] : 0u;
        const unsigned int slot = warp_append(&sm.count, img != 0u);
        if (img != 0u) out[slot] = make_uint2(img, static_cast<uint32_t>(lo + j));
      }
    }
  } else {
    auto img_of = [&](int64_t j) { return sm.chunk_img[j]; };
    const SelectResult r = block_select_kth(img_of, n, static_cast<uint32_t>(cblk), sm.sel);
    // r.found holds: nfin > cblk
    if (r.exact) {
      trunc = r.prefix - 1u;  // exactly cblk images >= prefix; the dropped ones are < prefix
      PYALIGN_WARP_UNIFORM_FOR(j, n) {
        const uint32_t img = j < n ? sm.chunk_img[j] : 0u;
        const bool take = img >= r.prefix && img != 0u;
        const unsigned int slot = warp_append(&sm.count, take);
        if (take) out[slot] = make_uint2(img, static_cast<uint32_t>(lo + j));
      }
    } else {
      trunc = r.prefix;  // the k-th image has ties beyond cblk: some of them are dropped
      PYALIGN_WARP_UNIFORM_FOR(j, n) {
        const uint32_t img = j < n ? sm.chunk_img[j] : 0u;
        const bool take = img > r.prefix;
        const unsigned int slot = warp_append(&sm.count, take);
        if (take) out[slot] = make_uint2(img, static_cast<uint32_t>(lo + j));
      }
      __syncthreads();
      PYALIGN_WARP_UNIFORM_FOR(j, n) {
        const bool take = j < n && sm.chunk_img[j] == r.prefix;
        const unsigned int slot = warp_append(&sm.count, take);
        if (take && slot < static_cast<unsigned int>(cblk))
          out[slot] = make_uint2(r.prefix, static_cast<uint32_t>(lo + j));
      }
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned int cnt = sm.count < static_cast<unsigned int>(cblk) ? sm.count : static_cast<unsigned int>(cblk);
    bi->zm = ms.m;
    bi->zs = ms.s;
    bi->sm = msb;
    bi->bad = anybad ? 1 : 0;
    bi->ss = ss;
    bi->count = cnt;
    bi->trunc = trunc;
    bi->nfin = nfin;
  }
}

template <typename T>
__device__ void gs_task(const T* zp0, const T* zb0, int64_t sp, int64_t sb, int64_t V, const float* w,
                        const float* tau, const int64_t* top_k, const float* top_p, const int64_t* rng, int splits,
                        int64_t chunk, int cblk, int64_t b, int c, unsigned long long* best, unsigned int* flags,
                        unsigned int* counter, BlockInfo* info, uint2* cand, int64_t* tokens, float* logp,
                        Smem& sm) {
  const RowP rp = row_params(b, w, tau, top_k, top_p, rng);
  const T* zp = zp0 + b * sp;
  const T* zb = zb0 ? zb0 + b * sb : nullptr;
  const int64_t lo = static_cast<int64_t>(c) * chunk;
  const int64_t hi = lo + chunk < V ? lo + chunk : V;
  BlockInfo* row_info = info + b * splits;
  const bool filtered = is_filtered(rp, V);
  if (filtered) {
    filtered_candidates(zp, zb, lo < hi ? lo : hi, hi, rp, cblk, row_info + c,
                        cand + (b * splits + c) * static_cast<int64_t>(cblk), sm);
  } else {
    const bool greedy = !(rp.tau > 0.0f);
    MaxSum ms{-PYALIGN_INF, 0.0f};
    ArgMax am{-PYALIGN_INF, -1};
    int bad = 0;
    for_each_z(zp, zb, lo < hi ? lo : hi, hi, rp.w, bad, [&](int64_t i, float z) {
      if (z == -PYALIGN_INF) return;
      ms = maxsum_add(ms, z);
      if (greedy) am = argmax_merge(am, ArgMax{z, i});
      else gumbel_candidate(div_rn(z, rp.tau), i, rp, am);
    });
    ms = cub::BlockReduce<MaxSum, kThreads>(sm.red.ms).Reduce(ms, MaxSumOp());
    __syncthreads();
    am = cub::BlockReduce<ArgMax, kThreads>(sm.red.am).Reduce(am, ArgMaxOp());
    __syncthreads();
    bad = cub::BlockReduce<int, kThreads>(sm.red.i).Sum(bad);
    if (threadIdx.x == 0) {
      BlockInfo* bi = row_info + c;
      bi->zm = ms.m;
      bi->zs = ms.s;
      bi->bad = bad != 0;
      if (am.i >= 0) atomicMax(&best[b], pack_key(am.v, static_cast<uint32_t>(am.i)));
    }
  }
  // the last block of the row finishes it
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) sm.last = atomicAdd(&counter[b], 1u) == static_cast<unsigned int>(splits - 1);
  __syncthreads();
  if (!sm.last) return;
  __threadfence();
  if (filtered) {
    MaxSum zstats;
    bool bad_row = false;
    const int64_t token = filtered_select(zp, zb, V, rp, splits, cblk, row_info, cand + b * splits * static_cast<int64_t>(cblk),
                                          zstats, bad_row, sm);
    if (threadIdx.x == 0) {
      finalize(zp, zb, b, bad_row ? -1 : token, zstats, bad_row, rp.w, tokens, logp);
      counter[b] = 0u;
    }
    return;
  }
  MaxSum ms{-PYALIGN_INF, 0.0f};
  unsigned int bad = 0;
  for (int s = threadIdx.x; s < splits; s += kThreads) {
    ms = maxsum_merge(ms, MaxSum{__ldcg(&row_info[s].zm), __ldcg(&row_info[s].zs)});
    bad |= static_cast<unsigned int>(__ldcg(&row_info[s].bad));
  }
  ms = all_maxsum(ms, sm);
  bad = all_max(bad, sm);
  if (threadIdx.x == 0) {
    const unsigned long long key = atomicExch(&best[b], 0ull);
    counter[b] = 0u;
    finalize(zp, zb, b, key == 0ull ? -1 : static_cast<int64_t>(key_index(key)), ms, bad != 0u, rp.w, tokens, logp);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 4) gs_kernel(
    const T* __restrict__ zp0, const T* __restrict__ zb0, int64_t sp, int64_t sb, int64_t B, int64_t V,
    const float* w, const float* tau, const int64_t* top_k, const float* top_p, const int64_t* rng, int splits,
    int64_t chunk, int cblk, unsigned long long* best, unsigned int* flags, unsigned int* counter, BlockInfo* info,
    uint2* cand, int64_t* tokens, float* logp) {
  __shared__ Smem sm;
  const int64_t ntasks = B * splits;
  for (int64_t task = blockIdx.x; task < ntasks; task += gridDim.x) {
    gs_task(zp0, zb0, sp, sb, V, w, tau, top_k, top_p, rng, splits, chunk, cblk, task / splits,
            static_cast<int>(task % splits), best, flags, counter, info, cand, tokens, logp, sm);
    __syncthreads();
  }
}

int cand_per_block(int splits) { return splits >= kCand ? 1 : kCand / splits; }

struct Layout {
  unsigned long long* best;
  unsigned int* flags;
  unsigned int* counter;
  BlockInfo* info;
  uint2* cand;
};

Layout layout(void* ws, int64_t B, int splits) {
  char* p = static_cast<char*>(ws);
  Layout L;
  L.best = reinterpret_cast<unsigned long long*>(p);
  L.flags = reinterpret_cast<unsigned int*>(p + 8 * B);
  L.counter = L.flags + B;
  L.info = reinterpret_cast<BlockInfo*>(p + 16 * B);
  L.cand = reinterpret_cast<uint2*>(p + 16 * B + static_cast<int64_t>(sizeof(BlockInfo)) * B * splits);
  return L;
}

template <typename T>
cudaError_t launch(const void* zp, const void* zb, int64_t sp, int64_t sb, int64_t B, int64_t V, const float* w,
                   const float* tau, const int64_t* top_k, const float* top_p, const int64_t* rng, int splits,
                   void* ws, int64_t* tokens, float* logp, cudaStream_t stream) {
  const int64_t chunk = (V + splits - 1) / splits;
  if (chunk > kChunk) return cudaErrorInvalidValue;  // splits must come from guided_sample_splits
  const Layout L = layout(ws, B, splits);
  // the per-row counters and argmax slots must start at zero (the rest of the workspace is written before it is
  // read): a 16·B-byte memset node, so callers need not zero the ~32 KiB/row candidate area
  cudaError_t err = cudaMemsetAsync(ws, 0, static_cast<size_t>(16 * B), stream);
  if (err != cudaSuccess) return err;
  const int64_t ntasks = B * splits;
  const unsigned int grid = static_cast<unsigned int>(ntasks < 0x7fffffffLL ? ntasks : 0x7fffffffLL);
  gs_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(zp), static_cast<const T*>(zb), sp, sb, B, V, w,
                                              tau, top_k, top_p, rng, splits, chunk, cand_per_block(splits), L.best,
                                              L.flags, L.counter, L.info, L.cand, tokens, logp);
  return cudaGetLastError();
}

}  // namespace

size_t guided_sample_workspace_bytes(int64_t B, int splits) {
  if (B <= 0 || splits <= 0) return 16;
  return static_cast<size_t>(16 * B + static_cast<int64_t>(sizeof(BlockInfo)) * B * splits +
                             8 * B * static_cast<int64_t>(splits) * cand_per_block(splits));
}

int guided_sample_splits(int64_t B, int64_t V, int num_sms) {
  // Blocks of at most kChunk elements (the candidate stage keeps a slice in shared memory); more, smaller
  // blocks (>= 2048 elements, <= 32 per row) when the batch alone cannot fill ~2 waves of the GPU.
  if (B <= 0 || V <= 0) return 1;
  const int64_t need = (V + kChunk - 1) / kChunk;
  const int64_t want = (2 * static_cast<int64_t>(num_sms > 0 ? num_sms : 1) + B - 1) / B;
  int64_t more = (V + 2047) / 2048;
  if (more > 32) more = 32;
  if (more > want) more = want;
  const int64_t s = need > more ? need : more;
  return static_cast<int>(s < 1 ? 1 : s);
}

cudaError_t launch_guided_sample(int dtype, const void* zp, const void* zb, int64_t sp, int64_t sb, int64_t B,
                                 int64_t V, const float* w, const float* tau, const int64_t* top_k,
                                 const float* top_p, const int64_t* rng, int splits, void* ws, int64_t* tokens,
                                 float* logp, cudaStream_t stream) {
  if (B == 0) return cudaSuccess;  // empty batch: nothing to launch
  if (B < 0 || V < 0 || splits < 1) return cudaErrorInvalidValue;
  switch (dtype) {
    case kF32: return launch<float>(zp, zb, sp, sb, B, V, w, tau, top_k, top_p, rng, splits, ws, tokens, logp, stream);
    case kBF16:
      return launch<__nv_bfloat16>(zp, zb, sp, sb, B, V, w, tau, top_k, top_p, rng, splits, ws, tokens, logp, stream);
    case kF16: return launch<__half>(zp, zb, sp, sb, B, V, w, tau, top_k, top_p, rng, splits, ws, tokens, logp, stream);
    case kF64: return launch<double>(zp, zb, sp, sb, B, V, w, tau, top_k, top_p, rng, splits, ws, tokens, logp, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace cuda
}  // namespace pyalign
