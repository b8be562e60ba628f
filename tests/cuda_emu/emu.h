// Compile kernels/*.cu as host C++ (g++ -include emu.h): the CUDA keywords
// vanish and the thread indices are globals that the caller sets before each
// "thread" runs (tests/test_cuda_kernels.py steps through a small grid, one
// thread at a time). The kernels write each output from one thread and use
// no shared memory or barriers, so sequential execution gives exactly the
// results a GPU gives; this checks their logic bit for bit on machines
// without a GPU.
#pragma once
#define __global__
#define __device__
#define __constant__
#define __host__
#define __shared__ static
#define __syncthreads()
#define CRYPTGPU_EMU 1
struct EmuDim3 {
    unsigned long long x, y, z;
};
extern EmuDim3 threadIdx, blockIdx, blockDim, gridDim;
// Threads run one at a time here, so an atomic add is a plain add.
static inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    unsigned long long old = *p;
    *p = old + v;
    return old;
}
