#include "emu.h"
EmuDim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};

extern "C" void emu_set_thread(unsigned long long block, unsigned long long thread,
                               unsigned long long nblocks, unsigned long long nthreads) {
    blockIdx.x = block;
    threadIdx.x = thread;
    gridDim.x = nblocks;
    blockDim.x = nthreads;
}
