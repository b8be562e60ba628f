// Shared by every kernel file: the ring type and the one-thread-per-item
// index. Kept free of CUDA headers so that NVRTC compiles the kernels with
// no toolkit include path, and so that tests/cuda_emu can compile the same
// files as C++ on the host and check them bit for bit against the CPU device.
#pragma once
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;
typedef unsigned char u8;

#define GLOBAL_ID() ((u64)blockIdx.x * (u64)blockDim.x + (u64)threadIdx.x)
#define GRID_STRIDE() ((u64)gridDim.x * (u64)blockDim.x)
// A grid-stride loop: correct for any launch size.
#define FOR_EACH(i, n) for (u64 i = GLOBAL_ID(); i < (u64)(n); i += GRID_STRIDE())
// A loop that the threads of a block share (filling shared memory before a
// __syncthreads()). The host emulation runs one thread at a time, so there
// each thread does the whole loop.
#ifdef CRYPTGPU_EMU
#define COOP_FIRST() ((u64)0)
#define COOP_STEP() ((u64)1)
#else
#define COOP_FIRST() ((u64)threadIdx.x)
#define COOP_STEP() ((u64)blockDim.x)
#endif
