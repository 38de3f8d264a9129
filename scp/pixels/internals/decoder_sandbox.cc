#include "scp/pixels/internals/decoder_sandbox.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <thread>

#include "absl/strings/cord.h"

namespace secondread::scp {
namespace {

constexpr char kReasonPayload[] = "type.secondread/decode_failure_reason";

}  // namespace

std::string DecodeFailureReason(const absl::Status& status) {
  auto reason = status.GetPayload(kReasonPayload);
  return reason ? std::string(*reason) : std::string(kUndecodable);
}

namespace internals {
namespace {

using Steady = std::chrono::steady_clock;

// The memfd holds the report first, then the pixels.
constexpr uint32_t kReportMagic = 0x43445253;  // "SRDC"
constexpr off_t kPixelsOffset = 4096;

// Exit codes of the child. Anything but kExitReport leaves no report.
constexpr int kExitReport = 0;
constexpr int kExitOutOfMemory = 3;
constexpr int kExitSetupFailed = 4;

struct Report {
  uint32_t magic;
  int32_t code;  // absl::StatusCode
  uint64_t length;
  uint16_t bits_allocated;
  uint16_t bits_stored;
  uint16_t high_bit;
  uint16_t pixel_representation;
  uint16_t samples_per_pixel;
  int32_t planar_configuration;
  char photometric[32];
  char message[512];
};
static_assert(sizeof(Report) <= kPixelsOffset);

// ---- The seccomp filter ---------------------------------------------------

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#define SECONDREAD_HAVE_SECCOMP 1
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#define SECONDREAD_HAVE_SECCOMP 1
#endif

#ifdef SECONDREAD_HAVE_SECCOMP
// Little-endian targets only (both above): the low word of an argument
// comes first.
constexpr uint32_t ArgLow(int i) { return offsetof(seccomp_data, args) + 8 * i; }
constexpr uint32_t ArgHigh(int i) { return ArgLow(i) + 4; }

class Bpf {
 public:
  void Load(uint32_t offset) { code_.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offset)); }
  void Ret(uint32_t action) { code_.push_back(BPF_STMT(BPF_RET | BPF_K, action)); }
  void Jump(uint16_t op, uint32_t k, uint8_t jt, uint8_t jf) { code_.push_back(BPF_JUMP(BPF_JMP | op | BPF_K, k, jt, jf)); }
  // With the syscall number in A: return `action` for `nr`.
  void On(long nr, uint32_t action) {
    Jump(BPF_JEQ, static_cast<uint32_t>(nr), 0, 1);
    Ret(action);
  }
  // For `nr`: `yes` when the low word of argument `arg` equals `value`, else `no`.
  void OnArgEquals(long nr, int arg, uint32_t value, uint32_t yes, uint32_t no) {
    Jump(BPF_JEQ, static_cast<uint32_t>(nr), 0, 4);
    Load(ArgLow(arg));
    Jump(BPF_JEQ, value, 0, 1);
    Ret(yes);
    Ret(no);
  }
  // For `nr`: `yes` when argument `arg` has any of `bits` (low word), else `no`.
  void OnArgHasBits(long nr, int arg, uint32_t bits, uint32_t yes, uint32_t no) {
    Jump(BPF_JEQ, static_cast<uint32_t>(nr), 0, 4);
    Load(ArgLow(arg));
    Jump(BPF_JSET, bits, 0, 1);
    Ret(yes);
    Ret(no);
  }
  // For `nr`: `yes` when argument `arg` is a null pointer, else `no`.
  void OnArgNull(long nr, int arg, uint32_t yes, uint32_t no) {
    Jump(BPF_JEQ, static_cast<uint32_t>(nr), 0, 6);
    Load(ArgLow(arg));
    Jump(BPF_JEQ, 0, 0, 3);
    Load(ArgHigh(arg));
    Jump(BPF_JEQ, 0, 0, 1);
    Ret(yes);
    Ret(no);
  }
  std::vector<sock_filter>& code() { return code_; }

 private:
  std::vector<sock_filter> code_;
};

// What the codecs (DCMTK's JPEG, JPEG-LS and RLE, GDCM with OpenJPEG) and
// glibc under them need once the input is open: memory, reading their input,
// writing the memfd, time, signals to themselves and threads. Anything not
// listed fails with EPERM (opening files among it), and the network and
// process creation end the child (SIGSYS) so the caller can say why.
std::vector<sock_filter> DecoderFilter(pid_t self) {
  constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
  constexpr uint32_t kKill = SECCOMP_RET_KILL_PROCESS;
  Bpf f;
  f.Load(offsetof(seccomp_data, arch));
  f.Jump(BPF_JEQ, kAuditArch, 1, 0);
  f.Ret(kKill);
  f.Load(offsetof(seccomp_data, nr));
#if defined(__x86_64__)
  // x32 system calls share the architecture value.
  f.Jump(BPF_JGE, 0x40000000u, 0, 1);
  f.Ret(kKill);
#endif
  for (long nr : {
#ifdef __NR_read
           __NR_read,
#endif
           __NR_write, __NR_readv, __NR_writev, __NR_pread64, __NR_pwrite64, __NR_lseek, __NR_close,
#ifdef __NR_fstat
           __NR_fstat,
#endif
#ifdef __NR_newfstatat
           __NR_newfstatat,
#endif
           __NR_fcntl, __NR_mmap, __NR_munmap, __NR_mremap, __NR_mprotect, __NR_madvise, __NR_brk, __NR_futex,
           __NR_set_robust_list, __NR_get_robust_list,
#ifdef __NR_rseq
           __NR_rseq,
#endif
           __NR_sched_yield, __NR_sched_getaffinity, __NR_getpid, __NR_gettid, __NR_clock_gettime,
           __NR_clock_getres, __NR_gettimeofday, __NR_nanosleep, __NR_clock_nanosleep, __NR_rt_sigaction,
           __NR_rt_sigprocmask, __NR_rt_sigreturn, __NR_sigaltstack, __NR_exit, __NR_exit_group, __NR_getrandom,
           __NR_sysinfo, __NR_uname, __NR_getrusage, __NR_restart_syscall,
           // A pipe within the child reaches nothing outside it; the
           // sanitizer runtimes of the fuzz build probe memory through one.
           __NR_pipe2,
#ifdef __NR_pipe
           __NR_pipe,
#endif
       }) {
    f.On(nr, kAllow);
  }
  for (long nr : {__NR_socket, __NR_socketpair, __NR_connect, __NR_bind, __NR_listen, __NR_accept, __NR_accept4,
                  __NR_sendto, __NR_sendmsg, __NR_sendmmsg, __NR_recvfrom, __NR_recvmsg, __NR_recvmmsg,
                  __NR_shutdown, __NR_getsockopt, __NR_setsockopt, __NR_execve, __NR_execveat,
#ifdef __NR_fork
                  __NR_fork,
#endif
#ifdef __NR_vfork
                  __NR_vfork,
#endif
                  __NR_ptrace, __NR_process_vm_readv, __NR_process_vm_writev, __NR_unshare, __NR_setns,
                  __NR_pidfd_open, __NR_pidfd_getfd, __NR_pidfd_send_signal}) {
    f.On(nr, kKill);
  }
  // Threads (OpenJPEG may start some), never new processes.
  f.OnArgHasBits(__NR_clone, 0, CLONE_THREAD, kAllow, kKill);
  // glibc falls back to clone, whose flags the filter can see.
  f.On(__NR_clone3, SECCOMP_RET_ERRNO | ENOSYS);
  // abort() signals itself; no other process may be signalled.
  f.OnArgEquals(__NR_tgkill, 0, static_cast<uint32_t>(self), kAllow, kKill);
  f.OnArgEquals(__NR_kill, 0, static_cast<uint32_t>(self), kAllow, kKill);
  // Reading a limit (pthread_create asks for the stack size); a child
  // running as root could otherwise raise its own.
  f.OnArgNull(__NR_prlimit64, 2, kAllow, SECCOMP_RET_ERRNO | EPERM);
  f.Ret(SECCOMP_RET_ERRNO | EPERM);
  return std::move(f.code());
}
#endif

// Installs the filter in the calling process for good. False where it could
// not be installed; where the architecture has no filter here, true.
bool InstallDecoderSeccompFilter() {
#ifdef SECONDREAD_HAVE_SECCOMP
  std::vector<sock_filter> code = DecoderFilter(::getpid());
  struct sock_fprog program = {static_cast<unsigned short>(code.size()), code.data()};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) == 0;
#else
  return true;
#endif
}

// Closes every descriptor but 0-2 and `keep`.
void CloseAllExcept(std::vector<int> keep) {
  keep.push_back(-1);
  keep.push_back(2);
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  for (size_t i = 0; i < keep.size(); ++i) {
    const unsigned first = static_cast<unsigned>(std::max(keep[i], 2) + 1);
    const unsigned last = i + 1 < keep.size() ? static_cast<unsigned>(keep[i + 1] - 1) : ~0u;
    if (first > last) continue;
    if (::syscall(SYS_close_range, first, last, 0) != 0) {
      // Kernels before 5.9: one by one, up to the descriptor limit.
      struct rlimit nofile = {};
      ::getrlimit(RLIMIT_NOFILE, &nofile);
      const unsigned end = static_cast<unsigned>(std::min<rlim_t>(nofile.rlim_cur, 1u << 20));
      for (unsigned fd = first; fd <= last && fd < end; ++fd) ::close(static_cast<int>(fd));
    }
  }
}

// The data memory (private writable mappings, the heap, thread stacks) the
// child inherited, which its memory limit adds to. RLIMIT_DATA rather than
// RLIMIT_AS: glibc reserves each thread arena's 64 MiB up front and grows into
// it with mprotect, which RLIMIT_AS does not see and RLIMIT_DATA does.
uint64_t InheritedDataBytes() {
  const int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[4096] = {};
  size_t used = 0;
  for (ssize_t n; used < sizeof buf - 1 && (n = ::read(fd, buf + used, sizeof buf - 1 - used)) > 0;) used += n;
  ::close(fd);
  const char* line = std::strstr(buf, "\nVmData:");
  if (line == nullptr) return 0;
  return std::strtoull(line + 8, nullptr, 10) * 1024;  // kB
}

void CopyText(char* dst, size_t size, const std::string& src) {
  const size_t n = std::min(size - 1, src.size());
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

bool WriteAll(int fd, const void* data, uint64_t length, off_t offset) {
  const char* p = static_cast<const char*>(data);
  uint64_t done = 0;
  while (done < length) {
    const ssize_t n = ::pwrite(fd, p + done, length - done, offset + static_cast<off_t>(done));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    done += static_cast<uint64_t>(n);
  }
  return true;
}

std::vector<std::unique_ptr<char[]>>* g_hoard = nullptr;  // the kAllocate fault's allocations

void Misbehave(DecoderFaultForTest fault) {
  switch (fault) {
    case DecoderFaultForTest::kNone:
      return;
    case DecoderFaultForTest::kCrash:
      std::abort();
    case DecoderFaultForTest::kAllocate:
      g_hoard = new std::vector<std::unique_ptr<char[]>>;
      for (;;) {
        constexpr size_t kChunk = 16u << 20;
        g_hoard->emplace_back(new char[kChunk]);
        std::memset(g_hoard->back().get(), 1, kChunk);
      }
    case DecoderFaultForTest::kSocket:
      ::socket(AF_INET, SOCK_STREAM, 0);
      ::_exit(kExitSetupFailed);
    case DecoderFaultForTest::kFork:
      if (::fork() == 0) ::_exit(0);
      ::_exit(kExitSetupFailed);
    case DecoderFaultForTest::kSpin:
      for (;;) __asm__ volatile("");
    case DecoderFaultForTest::kWriteInherited:
      for (int fd = 3; fd < 4096; ++fd) {
        if (::write(fd, "x", 1) < 0) continue;
      }
      ::_exit(kExitSetupFailed);
  }
}

[[noreturn]] void ChildMain(pid_t parent, int out, const DecoderLimits& limits, uint64_t capacity,
                            DecoderFaultForTest fault, const std::function<std::vector<int>()>& prepare,
                            const std::function<absl::Status(ChildOutput&)>& decode) {
  // Ends with the node, and never leaves a core file of pixel data behind.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(kExitSetupFailed);
  ::prctl(PR_SET_DUMPABLE, 0);
  struct rlimit none = {0, 0};
  ::setrlimit(RLIMIT_CORE, &none);

  // The node blocks SIGTERM and SIGINT for its signal thread and ignores
  // SIGPIPE; the child takes every signal's default, SIGXCPU's above all.
  sigset_t none_blocked;
  sigemptyset(&none_blocked);
  ::sigprocmask(SIG_SETMASK, &none_blocked, nullptr);
  ::signal(SIGPIPE, SIG_DFL);

  std::vector<int> keep = prepare ? prepare() : std::vector<int>{};
  keep.push_back(out);
  // Codecs and their libraries may print; nothing of theirs reaches the
  // node's log or any of its descriptors (database, associations, workers).
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) ::_exit(kExitSetupFailed);
  for (int fd = 0; fd <= 2; ++fd) {
    if (::dup2(null, fd) < 0) ::_exit(kExitSetupFailed);
  }
  if (null > 2) ::close(null);
  CloseAllExcept(keep);

  const uint64_t inherited = InheritedDataBytes();
  if (inherited == 0) ::_exit(kExitSetupFailed);
  struct rlimit data = {static_cast<rlim_t>(inherited + limits.memory_bytes),
                        static_cast<rlim_t>(inherited + limits.memory_bytes)};
  struct rlimit cpu = {limits.cpu_seconds, limits.cpu_seconds + 1u};
  if (::setrlimit(RLIMIT_DATA, &data) != 0 || ::setrlimit(RLIMIT_CPU, &cpu) != 0) ::_exit(kExitSetupFailed);
  if (!InstallDecoderSeccompFilter()) ::_exit(kExitSetupFailed);

  ChildOutput result;
  absl::Status status;
  try {
    Misbehave(fault);
    status = decode(result);
  } catch (const std::bad_alloc&) {
    ::_exit(kExitOutOfMemory);
  } catch (const std::exception& e) {
    status = absl::InternalError(std::string("pixel decoder failed: ") + e.what());
  } catch (...) {
    status = absl::InternalError("pixel decoder failed with an unknown exception");
  }
  Report report = {};
  report.magic = kReportMagic;
  if (status.ok() && result.length > capacity) {
    status = absl::InvalidArgumentError("the decoded pixel data is larger than the attributes allow");
  }
  if (status.ok() && !WriteAll(out, result.data, result.length, kPixelsOffset)) {
    status = absl::InternalError("writing the decoded pixels");
  }
  report.code = static_cast<int32_t>(status.code());
  CopyText(report.message, sizeof report.message, std::string(status.message()));
  if (status.ok()) {
    const PixelAttributes& a = result.attributes;
    report.length = result.length;
    report.bits_allocated = a.bits_allocated;
    report.bits_stored = a.bits_stored;
    report.high_bit = a.high_bit;
    report.pixel_representation = a.pixel_representation;
    report.samples_per_pixel = a.samples_per_pixel;
    report.planar_configuration = a.planar_configuration;
    CopyText(report.photometric, sizeof report.photometric, a.photometric);
  }
  ::_exit(WriteAll(out, &report, sizeof report, 0) ? kExitReport : kExitSetupFailed);
}

// Text from the child is untrusted: printable ASCII only, and bounded.
std::string Printable(const char* text, size_t size) {
  std::string out;
  for (size_t i = 0; i < size && text[i] != '\0'; ++i) {
    out.push_back(text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?');
  }
  return out;
}

}  // namespace

absl::Status WithReason(absl::Status status, const char* reason) {
  status.SetPayload(kReasonPayload, absl::Cord(reason));
  return status;
}

absl::StatusOr<IsolatedPixels> RunIsolated(const DecoderLimits& limits, uint64_t capacity,
                                           DecoderFaultForTest fault,
                                           const std::function<std::vector<int>()>& prepare,
                                           const std::function<absl::Status(ChildOutput&)>& decode) {
  int out = ::memfd_create("secondread-decode", MFD_CLOEXEC);
  if (out < 0) return absl::InternalError(std::string("memfd_create: ") + std::strerror(errno));
  // Above 0-2, which the child points at /dev/null (a node started with
  // stdin closed would otherwise get its memfd there).
  if (out <= 2) {
    const int above = ::fcntl(out, F_DUPFD_CLOEXEC, 3);
    ::close(out);
    if (above < 0) return absl::InternalError(std::string("fcntl: ") + std::strerror(errno));
    out = above;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } close_out{out};
  // Sparse: only the pages the child writes take memory.
  if (::ftruncate(out, kPixelsOffset + static_cast<off_t>(capacity)) != 0) {
    return absl::ResourceExhaustedError(std::string("ftruncate: ") + std::strerror(errno));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return absl::ResourceExhaustedError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) ChildMain(parent, out, limits, capacity, fault, prepare, decode);

  // A pidfd wakes the caller the moment the child ends; without one, polling.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  const auto deadline = Steady::now() + std::chrono::seconds(limits.wall_seconds);
  auto pause = std::chrono::microseconds(100);
  int status = 0;
  bool timed_out = false;
  for (;;) {
    const pid_t waited = ::waitpid(pid, &status, WNOHANG);
    if (waited == pid) break;
    if (waited < 0 && errno != EINTR) {
      if (pidfd >= 0) ::close(pidfd);
      return absl::InternalError(std::string("waitpid: ") + std::strerror(errno));
    }
    const auto now = Steady::now();
    if (now >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      timed_out = true;
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    if (pidfd >= 0) {
      struct pollfd p = {pidfd, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    } else {
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(10000));
    }
  }
  if (pidfd >= 0) ::close(pidfd);

  if (timed_out) {
    return WithReason(absl::InvalidArgumentError("the pixel decoder ran past its " +
                                                 std::to_string(limits.wall_seconds) + " s and was stopped"),
                      kDecoderTimeout);
  }
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    if (sig == SIGSYS) {
      return WithReason(absl::InvalidArgumentError("the pixel decoder made a forbidden system call and was stopped"),
                        kDecoderForbiddenSyscall);
    }
    if (sig == SIGXCPU) {
      return WithReason(absl::InvalidArgumentError("the pixel decoder ran past its " +
                                                   std::to_string(limits.cpu_seconds) + " s of CPU time"),
                        kDecoderTimeout);
    }
    return WithReason(
        absl::InvalidArgumentError("the pixel decoder crashed on this object (signal " + std::to_string(sig) + ")"),
        kDecoderCrashed);
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == kExitOutOfMemory) {
    return WithReason(absl::ResourceExhaustedError("the pixel decoder ran out of its " +
                                                   std::to_string(limits.memory_bytes >> 20) + " MiB of memory"),
                      kDecoderOutOfMemory);
  }
  if (code != kExitReport) {
    return WithReason(absl::InternalError("the pixel decoder failed (exit " + std::to_string(code) + ")"),
                      kDecoderCrashed);
  }
  Report report = {};
  if (::pread(out, &report, sizeof report, 0) != static_cast<ssize_t>(sizeof report) ||
      report.magic != kReportMagic) {
    return WithReason(absl::InternalError("the pixel decoder left no report"), kDecoderCrashed);
  }
  const std::string message = Printable(report.message, sizeof report.message);
  if (report.code != 0) {
    const auto status_code =
        report.code > 0 && report.code <= 16 ? static_cast<absl::StatusCode>(report.code) : absl::StatusCode::kInternal;
    absl::Status failed(status_code, message);
    return status_code == absl::StatusCode::kResourceExhausted ? WithReason(failed, kDecoderOutOfMemory) : failed;
  }
  if (report.length > capacity) {
    return absl::InvalidArgumentError("the decoded pixel data is larger than the attributes allow");
  }
  IsolatedPixels pixels;
  pixels.attributes.bits_allocated = report.bits_allocated;
  pixels.attributes.bits_stored = report.bits_stored;
  pixels.attributes.high_bit = report.high_bit;
  pixels.attributes.pixel_representation = report.pixel_representation;
  pixels.attributes.samples_per_pixel = report.samples_per_pixel;
  pixels.attributes.planar_configuration = report.planar_configuration;
  pixels.attributes.photometric = Printable(report.photometric, sizeof report.photometric);
  pixels.bytes.resize(report.length);
  uint64_t done = 0;
  while (done < report.length) {
    const ssize_t n = ::pread(out, pixels.bytes.data() + done, report.length - done,
                              kPixelsOffset + static_cast<off_t>(done));
    if (n <= 0) return absl::InternalError("reading the decoded pixels back");
    done += static_cast<uint64_t>(n);
  }
  return pixels;
}

}  // namespace internals
}  // namespace secondread::scp
