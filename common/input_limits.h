// Bounds on what user input may make the tools read or allocate.
//
// Every input file (a spec, a data set, labels, a checkpoint) is read through
// read_input_file, which refuses anything but a regular file (a directory, a FIFO,
// /dev/zero, a symlink to one) with a one-line UserError before reading a byte, so
// no input can hang a tool or exhaust its memory by being endless. Buffers sized by
// flags or by a module (--batch, -n, the parameters) are checked against the
// machine's memory with check_memory first, so a request that cannot fit is a user
// error that names the bytes needed and the limit instead of a bad_alloc.
#pragma once
#include <cstdint>
#include <string>

namespace ddpmc {

// The most samples one evaluation during training may draw (ddpm-train
// --eval-samples): FID is usually quoted at 50,000.
constexpr int64_t kMaxEvalSamples = 100000;

// Why `path` is not a readable regular file ("it is a directory", "it is a
// character device, not a regular file", "No such file or directory"), or "" if it
// is one. Symbolic links are followed.
std::string input_file_problem(const std::string& path);

// Reads the whole regular file `path`. `what` names its role in messages
// ("data file", "checkpoint"). Throws a UserError naming the file when it is not a
// regular file, cannot be read, or is larger than max_bytes or the machine's
// memory.
std::string read_input_file(const std::string& path, const std::string& what, const std::string& hint,
                            uint64_t max_bytes = UINT64_MAX);

// The memory a tool may use: the smallest of the physical memory, the cgroup's
// memory.max and RLIMIT_AS. DDPM_MEMORY_LIMIT_MB, when set to a positive number,
// lowers it (for tests and shared machines).
uint64_t memory_limit_bytes();

// "1.5 GiB", "12.0 MiB", "512 bytes".
std::string format_bytes(double bytes);

// Throws a UserError "<what> needs <bytes>, more than the <limit> of memory this
// machine allows" with `hint` when `bytes` exceeds memory_limit_bytes().
void check_memory(double bytes, const std::string& what, const std::string& hint);

}  // namespace ddpmc
