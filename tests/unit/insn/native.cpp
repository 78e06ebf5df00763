#include "tests/unit/insn/native.hpp"
#include <asm/prctl.h>
#include <csetjmp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

// insn_native_enter(cpu_regs*): saves the callee-saved registers and the state pointer,
// loads RFLAGS and the GPRs, and jumps to insn_native_target. The code page ends with
// `jmp [rip+0]; .quad insn_native_exit`, which stores the GPRs and RFLAGS back.
asm(R"(
    .text
    .globl insn_native_enter
    .globl insn_native_exit
    .type insn_native_enter, @function
insn_native_enter:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi
    pushq 128(%rdi)
    popfq
    mov 0(%rdi), %rax
    mov 8(%rdi), %rcx
    mov 16(%rdi), %rdx
    mov 24(%rdi), %rbx
    mov 40(%rdi), %rbp
    mov 48(%rdi), %rsi
    mov 64(%rdi), %r8
    mov 72(%rdi), %r9
    mov 80(%rdi), %r10
    mov 88(%rdi), %r11
    mov 96(%rdi), %r12
    mov 104(%rdi), %r13
    mov 112(%rdi), %r14
    mov 120(%rdi), %r15
    mov 56(%rdi), %rdi
    jmp *insn_native_target(%rip)
insn_native_exit:
    pushfq
    push %rdi
    mov 16(%rsp), %rdi
    mov %rax, 0(%rdi)
    mov %rcx, 8(%rdi)
    mov %rdx, 16(%rdi)
    mov %rbx, 24(%rdi)
    mov %rbp, 40(%rdi)
    mov %rsi, 48(%rdi)
    mov %r8, 64(%rdi)
    mov %r9, 72(%rdi)
    mov %r10, 80(%rdi)
    mov %r11, 88(%rdi)
    mov %r12, 96(%rdi)
    mov %r13, 104(%rdi)
    mov %r14, 112(%rdi)
    mov %r15, 120(%rdi)
    pop %rax
    mov %rax, 56(%rdi)
    pop %rax
    mov %rax, 128(%rdi)
    cld
    pop %rdi
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
    .size insn_native_enter, .-insn_native_enter

    .data
    .balign 8
insn_native_target:
    .quad 0
    .globl insn_native_target
    .text
)");

extern "C" {
void insn_native_enter(insn_test::cpu_regs*);
void insn_native_exit();
extern std::uint64_t insn_native_target;
}

namespace insn_test {
namespace {

constexpr std::size_t code_page = 4096;
constexpr std::size_t insn_offset = 64;  // some room before the instruction, nothing else there

sigjmp_buf g_trap;
volatile sig_atomic_t g_armed = 0;

void on_signal(int sig, siginfo_t*, void*) {
    if (g_armed) siglongjmp(g_trap, sig);
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

void* map_low(std::size_t n, int prot) {
    void* p = mmap(nullptr, n, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (p == MAP_FAILED) {
        std::perror("mmap MAP_32BIT");
        std::abort();
    }
    return p;
}

} // namespace

low_memory::low_memory(std::size_t bytes) : p_{static_cast<std::uint8_t*>(map_low(bytes, PROT_READ | PROT_WRITE))}, n_{bytes} {}
low_memory::~low_memory() { munmap(p_, n_); }

native_cpu::native_cpu() : page_{static_cast<std::uint8_t*>(map_low(code_page, PROT_READ | PROT_WRITE))} {
    struct sigaction sa {};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE}) sigaction(sig, &sa, nullptr);
}

native_cpu::~native_cpu() { munmap(page_, code_page); }

std::uint64_t native_cpu::insn_address() const { return reinterpret_cast<std::uint64_t>(page_) + insn_offset; }

bool native_cpu::run(std::span<const std::uint8_t> insn, cpu_regs& r) {
    mprotect(page_, code_page, PROT_READ | PROT_WRITE);
    std::memset(page_, 0xCC, code_page);
    std::memcpy(page_ + insn_offset, insn.data(), insn.size());
    std::uint8_t* p = page_ + insn_offset + insn.size();
    const std::uint8_t jmp_back[] = {0xFF, 0x25, 0, 0, 0, 0};  // jmp qword [rip+0]
    std::memcpy(p, jmp_back, sizeof jmp_back);
    const auto exit_address = reinterpret_cast<std::uint64_t>(&insn_native_exit);
    std::memcpy(p + sizeof jmp_back, &exit_address, 8);
    mprotect(page_, code_page, PROT_READ | PROT_EXEC);
    insn_native_target = insn_address();
    if (sigsetjmp(g_trap, 1) != 0) {
        g_armed = 0;
        return false;
    }
    g_armed = 1;
    insn_native_enter(&r);
    g_armed = 0;
    return true;
}

std::uint64_t native_cpu::fs_base() {
    unsigned long v = 0;
    syscall(SYS_arch_prctl, ARCH_GET_FS, &v);
    return v;
}

std::uint64_t native_cpu::gs_base() {
    unsigned long v = 0;
    syscall(SYS_arch_prctl, ARCH_GET_GS, &v);
    return v;
}

} // namespace insn_test
