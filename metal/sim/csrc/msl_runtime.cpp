// msl_runtime.cpp: runs a kernel's threadgroups for mlxtrain's shader simulator.
//
// Threadgroups run one after another, in order. Within a group every lane is a
// cooperative fiber with its own stack; the scheduler runs lane 0, 1, 2, ... each
// until it blocks (a barrier, a SIMD-group operation) or returns, then resolves
// what the blocked lanes wait for and starts the next round. Nothing is concurrent
// and nothing depends on timing, so a kernel that reads memory another lane has not
// written yet (a missing barrier) reads the poison every time.
//
// The process serialises launches per library (the Go side holds a lock), so the
// scheduler state is plain globals.
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if !(defined(__x86_64__) && defined(__ELF__)) || defined(MLXSIM_UCONTEXT)
#define MLXSIM_USE_UCONTEXT 1
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#include <ucontext.h>
#endif

namespace mlxsim {
// The parts of msl_shim.h this file needs, repeated so that the runtime does not
// pull the MSL names into a translation unit with the C library's.
struct SimdSlot {
  int active;
  int pad;
  void* obj;
  long arg;
  unsigned char in[32];
  unsigned char out[32];
};
typedef const char* (*Combine)(SimdSlot* slots, int width);
struct u3 { uint32_t x, y, z; };
struct Ids {
  u3 tpig, tpitg, tgpig, tptg, tgpg, tpg;
  uint32_t tiitg, tiisg, siitg, tpsg, sgptg;
};
enum { kMaxBuffers = 31, kMaxConstants = 64, kErrLen = 1024 };
struct Launch {
  void* buf[kMaxBuffers + 1];
  void* tg[kMaxBuffers + 1];
  uint64_t tg_size[kMaxBuffers + 1];
  uint64_t fc[kMaxConstants];
  uint64_t fc_set;
  uint32_t groups[3];
  uint32_t threads[3];
  uint32_t tg_limit;
  uint32_t pad;
  char err[kErrLen];
};
typedef void (*Entry)(Launch* L, const Ids* id);

namespace {
enum State { kRun, kBarrier, kSimdBarrier, kSimd, kDone };
enum { kMaxLanes = 1024, kSimdWidth = 32, kStackBytes = 256 << 10 };

struct Lane {
#ifdef MLXSIM_USE_UCONTEXT
  ucontext_t ctx;
#else
  void* sp;
#endif
  State state;
  const char* file;  // where the lane waits
  int line;
  Combine op;        // the SIMD-group operation it waits at
  long arg;
  void* obj;
  const void* in;
  unsigned in_size;
  void* out;
  Ids ids;
};

Lane lanes[kMaxLanes];
unsigned char* stacks;  // kMaxLanes stacks, each with a guard page below
int nlanes;
Lane* cur;
Launch* launch;
Entry entry;
const char* kernel_name;
char* failure;  // set when the launch fails; the scheduler stops at once
#ifdef MLXSIM_USE_UCONTEXT
ucontext_t sched_ctx;
#else
void* sched_sp;
#endif

struct TgVar { void* p; unsigned long size; };
TgVar tg_vars[256];
int n_tg_vars;
unsigned long tg_bytes;  // static threadgroup memory of this group so far
unsigned long dyn_tg_bytes;

__attribute__((format(printf, 1, 2))) void fail(const char* fmt, ...) {
  if (failure) return;
  failure = launch->err;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(launch->err, kErrLen, fmt, ap);
  va_end(ap);
}
}  // namespace

#ifndef MLXSIM_USE_UCONTEXT
// switch_stack saves the callee-saved registers on the current stack, stores the
// stack pointer in *save and resumes the context whose stack pointer is to.
extern "C" void mlxsim_switch_stack(void** save, void* to);
asm(R"(
  .text
  .p2align 4
  .globl mlxsim_switch_stack
  .hidden mlxsim_switch_stack
  .type mlxsim_switch_stack,@function
mlxsim_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size mlxsim_switch_stack, .-mlxsim_switch_stack
)");
#endif

namespace {
void to_scheduler() {
#ifdef MLXSIM_USE_UCONTEXT
  swapcontext(&cur->ctx, &sched_ctx);
#else
  mlxsim_switch_stack(&cur->sp, sched_sp);
#endif
}

void lane_main() {
  entry(launch, &cur->ids);
  cur->state = kDone;
  to_scheduler();
  __builtin_trap();  // a finished lane is never resumed
}

void block(State s, const char* file, int line) {
  cur->state = s;
  cur->file = file;
  cur->line = line;
  to_scheduler();
}

bool ensure_stacks() {
  if (stacks) return true;
  long page = sysconf(_SC_PAGESIZE);
  size_t total = (size_t)kMaxLanes * kStackBytes;
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return false;
  stacks = (unsigned char*)p;
  for (int i = 0; i < kMaxLanes; i++) mprotect(stacks + (size_t)i * kStackBytes, page, PROT_NONE);
  return true;
}

void start_lane(int i) {
  Lane& l = lanes[i];
  unsigned char* lo = stacks + (size_t)i * kStackBytes;
#ifdef MLXSIM_USE_UCONTEXT
  getcontext(&l.ctx);
  l.ctx.uc_stack.ss_sp = lo;
  l.ctx.uc_stack.ss_size = kStackBytes;
  l.ctx.uc_link = nullptr;
  makecontext(&l.ctx, (void (*)())lane_main, 0);
#else
  // The first switch pops six registers and returns into lane_main with the stack
  // aligned as after a call.
  uintptr_t top = ((uintptr_t)(lo + kStackBytes)) & ~(uintptr_t)15;
  void** ret = (void**)(top - 16);
  ret[0] = (void*)&lane_main;
  ret[1] = nullptr;
  void** sp = ret - 6;
  for (int r = 0; r < 6; r++) sp[r] = nullptr;
  l.sp = sp;
#endif
  l.state = kRun;
  l.file = nullptr;
  l.line = 0;
}

void resume(int i) {
  cur = &lanes[i];
#ifdef MLXSIM_USE_UCONTEXT
  swapcontext(&sched_ctx, &cur->ctx);
#else
  mlxsim_switch_stack(&sched_sp, cur->sp);
#endif
}

const char* state_name(State s) {
  switch (s) {
    case kRun: return "running";
    case kBarrier: return "threadgroup_barrier";
    case kSimdBarrier: return "simdgroup_barrier";
    case kSimd: return "a SIMD-group function";
    case kDone: return "returned";
  }
  return "?";
}

// before orders call sites by file and line: a stand-in for program order.
bool before(const Lane& a, const Lane& b) {
  if (a.file != b.file) {
    int c = strcmp(a.file, b.file);
    if (c != 0) return c < 0;
  }
  return a.line < b.line;
}

// Resolve one SIMD-group operation that lanes of one SIMD group wait at. When
// the lanes wait at different call sites (divergent control flow), the earliest
// site in program order goes first with the lanes waiting there as its active
// set; the others keep waiting, so lanes that skipped a branch meet the branch's
// lanes again at the next shared call (reconvergence after an if or an early
// loop exit). Loops whose lanes diverge between two SIMD calls of one body are
// beyond this rule: keep SIMD-group calls out of divergent loops.
bool resolve_simd(int base, int width) {
  int first = -1;
  for (int i = 0; i < width; i++) {
    Lane& li = lanes[base + i];
    if (li.state == kSimd && (first < 0 || before(li, lanes[base + first]))) first = i;
  }
  if (first < 0) return false;
  Lane& lf = lanes[base + first];
  SimdSlot slots[kSimdWidth];
  memset(slots, 0, sizeof(SimdSlot) * width);
  for (int j = 0; j < width; j++) {
    Lane& lj = lanes[base + j];
    if (lj.state != kSimd || lj.op != lf.op || lj.line != lf.line || strcmp(lj.file, lf.file) != 0) continue;
    SimdSlot& s = slots[j];
    s.active = 1;
    s.obj = lj.obj;
    s.arg = lj.arg;
    if (lj.in_size) memcpy(s.in, lj.in, lj.in_size);
  }
  if (const char* e = lf.op(slots, width)) {
    fail("%s (at %s line %d)", e, lf.file, lf.line);
    return false;
  }
  for (int j = 0; j < width; j++) {
    if (!slots[j].active) continue;
    Lane& lj = lanes[base + j];
    if (lj.out) memcpy(lj.out, slots[j].out, lj.in_size);
    lj.state = kRun;
  }
  return true;
}

bool resolve_simd_barrier(int base, int width) {
  int waiting = 0, done = 0, first = -1;
  for (int i = 0; i < width; i++) {
    State s = lanes[base + i].state;
    if (s == kSimdBarrier) {
      waiting++;
      if (first < 0) first = base + i;
    }
    if (s == kDone) done++;
  }
  if (waiting == 0 || waiting + done < width) return false;
  if (done > 0) {
    fail("simdgroup_barrier at %s line %d: a lane of its SIMD group returned before reaching it", lanes[first].file, lanes[first].line);
    return false;
  }
  for (int i = 0; i < width; i++) {
    Lane& l = lanes[base + i];
    if (l.line != lanes[first].line || l.file != lanes[first].file) {
      fail("lanes of one SIMD group wait at different simdgroup_barrier calls (%s line %d and line %d)", l.file, l.line, lanes[first].line);
      return false;
    }
  }
  for (int i = 0; i < width; i++) lanes[base + i].state = kRun;
  return true;
}

bool resolve_barrier() {
  int waiting = 0, done = 0, first = -1, first_done = -1;
  for (int i = 0; i < nlanes; i++) {
    if (lanes[i].state == kBarrier) {
      waiting++;
      if (first < 0) first = i;
    } else if (lanes[i].state == kDone) {
      done++;
      if (first_done < 0) first_done = i;
    }
  }
  if (waiting == 0 || waiting + done < nlanes) return false;
  if (done > 0) {
    fail("threadgroup_barrier at %s line %d: lane %d returned before reaching it (every lane of a threadgroup must reach every barrier)",
         lanes[first].file, lanes[first].line, first_done);
    return false;
  }
  for (int i = 0; i < nlanes; i++) {
    if (lanes[i].line != lanes[first].line || lanes[i].file != lanes[first].file) {
      fail("lanes wait at different threadgroup_barrier calls (%s line %d and line %d)", lanes[i].file, lanes[i].line, lanes[first].line);
      return false;
    }
  }
  for (int i = 0; i < nlanes; i++) lanes[i].state = kRun;
  return true;
}

void describe_deadlock() {
  char buf[160];
  int n = 0;
  for (int i = 0; i < nlanes && n < 4; i++) {
    if (lanes[i].state == kDone) continue;
    snprintf(buf, sizeof buf, "lane %d waits at %s (%s line %d)", i, state_name(lanes[i].state), lanes[i].file ? lanes[i].file : "?", lanes[i].line);
    if (n == 0) {
      fail("deadlock: %s", buf);
    } else {
      size_t len = strlen(launch->err);
      snprintf(launch->err + len, kErrLen - len, "; %s", buf);
    }
    n++;
  }
}

bool run_group(const u3& g) {
  const uint32_t tx = launch->threads[0], ty = launch->threads[1], tz = launch->threads[2];
  n_tg_vars = 0;
  tg_bytes = 0;
  for (int i = 0; i <= kMaxBuffers; i++)
    if (launch->tg[i]) memset(launch->tg[i], 0xff, launch->tg_size[i]);
  for (int i = 0; i < nlanes; i++) {
    Lane& l = lanes[i];
    uint32_t x = i % tx, y = (i / tx) % ty, z = i / (tx * ty);
    Ids& id = l.ids;
    id.tpitg = {x, y, z};
    id.tgpig = g;
    id.tptg = {tx, ty, tz};
    id.tgpg = {launch->groups[0], launch->groups[1], launch->groups[2]};
    id.tpg = {tx * launch->groups[0], ty * launch->groups[1], tz * launch->groups[2]};
    id.tpig = {g.x * tx + x, g.y * ty + y, g.z * tz + z};
    id.tiitg = i;
    id.tiisg = i % kSimdWidth;
    id.siitg = i / kSimdWidth;
    id.tpsg = kSimdWidth;
    id.sgptg = (nlanes + kSimdWidth - 1) / kSimdWidth;
    start_lane(i);
  }
  for (;;) {
    int done = 0;
    for (int i = 0; i < nlanes; i++) {
      if (lanes[i].state == kRun) resume(i);
      if (failure) return false;
      if (lanes[i].state == kDone) done++;
    }
    if (done == nlanes) return true;
    bool progress = false;
    for (int base = 0; base < nlanes; base += kSimdWidth) {
      int width = nlanes - base < kSimdWidth ? nlanes - base : kSimdWidth;
      progress |= resolve_simd(base, width);
      if (failure) return false;
      progress |= resolve_simd_barrier(base, width);
      if (failure) return false;
    }
    if (!progress) progress = resolve_barrier();
    if (failure) return false;
    if (!progress) {
      describe_deadlock();
      return false;
    }
  }
}
}  // namespace

// ---- faults --------------------------------------------------------------------------
// A kernel that reads or writes out of bounds reaches a guard page of the Go side's
// device memory. For the duration of a launch this handler names the kernel and
// lane on stderr, then puts the previous (Go's) handlers back and returns: the
// access runs again and Go reports the crash with its stack.
namespace {
struct sigaction old_segv, old_bus;
pthread_t launch_thread;

void on_fault(int sig, siginfo_t* si, void*) {
  sigaction(SIGSEGV, &old_segv, nullptr);
  sigaction(SIGBUS, &old_bus, nullptr);
  if (!pthread_equal(pthread_self(), launch_thread) || !launch || !cur) return;
  char msg[512];
  int n = snprintf(msg, sizeof msg,
                   "mlxsim: kernel %s faulted (signal %d) at address %p in threadgroup (%u,%u,%u), lane %u: "
                   "an access out of its buffer's bounds?\n",
                   kernel_name, sig, si->si_addr, cur->ids.tgpig.x, cur->ids.tgpig.y, cur->ids.tgpig.z, cur->ids.tiitg);
  if (n > 0) {
    ssize_t w = write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    (void)w;
  }
}

void watch_faults() {
  launch_thread = pthread_self();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &old_segv);
  sigaction(SIGBUS, &sa, &old_bus);
}

void unwatch_faults() {
  sigaction(SIGSEGV, &old_segv, nullptr);
  sigaction(SIGBUS, &old_bus, nullptr);
}
}  // namespace

// ---- called by kernels (through msl_shim.h) ----------------------------------------
void tg_barrier(const char* file, int line) { block(kBarrier, file, line); }
void sg_barrier(const char* file, int line) { block(kSimdBarrier, file, line); }

void simd_op(Combine f, const char* file, int line, const void* in, unsigned size, long arg, void* obj, void* out) {
  cur->op = f;
  cur->in = in;
  cur->in_size = size;
  cur->arg = arg;
  cur->obj = obj;
  cur->out = out;
  block(kSimd, file, line);
}

void tg_declare(void* p, unsigned long size, const char* file, int line) {
  for (int i = 0; i < n_tg_vars; i++)
    if (tg_vars[i].p == p) return;
  if (n_tg_vars == (int)(sizeof tg_vars / sizeof tg_vars[0])) {
    fail("too many threadgroup variables (%s line %d)", file, line);
    block(kSimd, file, line);  // never resumed: the launch has failed
  }
  tg_vars[n_tg_vars++] = {p, size};
  tg_bytes += size;
  memset(p, 0xff, size);
  if (tg_bytes + dyn_tg_bytes > launch->tg_limit) {
    fail("threadgroup memory over the %u-byte limit at %s line %d: %lu bytes", launch->tg_limit, file, line, tg_bytes + dyn_tg_bytes);
    block(kSimd, file, line);
  }
}

// ---- called by the generated launchers --------------------------------------------
int run(Launch* L, Entry e, const char* name) {
  launch = L;
  entry = e;
  kernel_name = name;
  failure = nullptr;
  L->err[0] = 0;
  uint64_t n = (uint64_t)L->threads[0] * L->threads[1] * L->threads[2];
  if (n == 0 || n > kMaxLanes) {
    fail("%s: %llu threads per threadgroup (want 1 to 1024)", name, (unsigned long long)n);
    return 1;
  }
  if (!ensure_stacks()) {
    fail("%s: cannot map lane stacks", name);
    return 1;
  }
  nlanes = (int)n;
  dyn_tg_bytes = 0;
  for (int i = 0; i <= kMaxBuffers; i++) {
    L->tg[i] = nullptr;
    if (L->tg_size[i]) {
      L->tg[i] = malloc(L->tg_size[i]);
      dyn_tg_bytes += L->tg_size[i];
    }
  }
  int rc = 0;
  watch_faults();
  if (dyn_tg_bytes > L->tg_limit) {
    fail("%s: %lu bytes of threadgroup memory requested (limit %u)", name, dyn_tg_bytes, L->tg_limit);
    rc = 1;
  }
  for (uint32_t z = 0; rc == 0 && z < L->groups[2]; z++)
    for (uint32_t y = 0; rc == 0 && y < L->groups[1]; y++)
      for (uint32_t x = 0; rc == 0 && x < L->groups[0]; x++) {
        u3 g = {x, y, z};
        if (!run_group(g)) {
          char where[kErrLen];
          snprintf(where, sizeof where, "%s, threadgroup (%u,%u,%u): %s", name, x, y, z, L->err);
          memcpy(L->err, where, kErrLen);
          rc = 1;
        }
      }
  unwatch_faults();
  for (int i = 0; i <= kMaxBuffers; i++) {
    free(L->tg[i]);
    L->tg[i] = nullptr;
  }
  return rc;
}
}  // namespace mlxsim

extern "C" __attribute__((visibility("default"))) unsigned long mlxsim_launch_size(void) { return sizeof(mlxsim::Launch); }
