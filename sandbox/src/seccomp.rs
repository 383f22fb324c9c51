//! The seccomp filter, modelled on Docker's default profile: an allow-list
//! of system calls, everything else fails with `EPERM`.
//!
//! Facts carried over from Docker's profile (moby `profiles/seccomp`):
//! - syscalls that need a capability the sandbox does not grant
//!   (`CAP_SYS_ADMIN`: mount, umount2, unshare, setns, bpf, ...;
//!   `CAP_SYS_MODULE`: init_module, finit_module, delete_module;
//!   `CAP_SYS_BOOT`: kexec_load, reboot; `CAP_DAC_READ_SEARCH`:
//!   open_by_handle_at) are left out, and so are keyctl, add_key,
//!   request_key, perf_event_open, userfaultfd, io_uring_*;
//! - `ptrace` and `process_vm_readv/writev` are allowed, as Docker does on
//!   kernels >= 4.8 (where ptrace can no longer bypass seccomp); `kcmp`,
//!   `pidfd_getfd` and `process_madvise` need `CAP_SYS_PTRACE` there and
//!   are left out;
//! - `io_uring_*` are left out, as in Docker's profile since Docker 25
//!   (moby#46762; Docker 20.10 allowed them);
//! - `clone` is allowed only without namespace flags (mask `0x7E020000`);
//! - `clone3` fails with `ENOSYS` (not `EPERM`) so that libc falls back to
//!   `clone`, whose flags the filter can inspect;
//! - `personality` is allowed only for the harmless personas Docker allows
//!   (0, 8, 0x20000, 0x20008, 0xffffffff).
//!
//! The filter is one classic-BPF program compiled here as a balanced
//! search over the system call numbers (see [`compile`]).

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => { &[$(libc::$name),*] };
}

/// Allowed on every architecture (names as in Docker's default profile).
const ALLOWED: &[libc::c_long] = syscalls![
    SYS_accept,
    SYS_accept4,
    SYS_adjtimex,
    SYS_bind,
    SYS_brk,
    SYS_capget,
    SYS_capset,
    SYS_chdir,
    SYS_chroot,
    SYS_clock_adjtime,
    SYS_clock_getres,
    SYS_clock_gettime,
    SYS_clock_nanosleep,
    SYS_close,
    SYS_close_range,
    SYS_connect,
    SYS_copy_file_range,
    SYS_dup,
    SYS_dup3,
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_eventfd2,
    SYS_execve,
    SYS_execveat,
    SYS_exit,
    SYS_exit_group,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_fadvise64,
    SYS_fallocate,
    SYS_fanotify_mark,
    SYS_fchdir,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_fchown,
    SYS_fchownat,
    SYS_fcntl,
    SYS_fdatasync,
    SYS_fgetxattr,
    SYS_flistxattr,
    SYS_flock,
    SYS_fremovexattr,
    SYS_fsetxattr,
    SYS_fstat,
    SYS_fstatfs,
    SYS_fsync,
    SYS_ftruncate,
    SYS_futex,
    SYS_futex_waitv,
    SYS_getcpu,
    SYS_getcwd,
    SYS_getdents64,
    SYS_getegid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getgroups,
    SYS_getitimer,
    SYS_getpeername,
    SYS_getpgid,
    SYS_getpid,
    SYS_getppid,
    SYS_getpriority,
    SYS_getrandom,
    SYS_getresgid,
    SYS_getresuid,
    SYS_getrlimit,
    SYS_get_robust_list,
    SYS_getrusage,
    SYS_getsid,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_gettid,
    SYS_gettimeofday,
    SYS_getuid,
    SYS_getxattr,
    SYS_inotify_add_watch,
    SYS_inotify_init1,
    SYS_inotify_rm_watch,
    SYS_io_cancel,
    SYS_ioctl,
    SYS_io_destroy,
    SYS_io_getevents,
    SYS_ioprio_get,
    SYS_ioprio_set,
    SYS_io_setup,
    SYS_io_submit,
    SYS_kill,
    SYS_landlock_add_rule,
    SYS_landlock_create_ruleset,
    SYS_landlock_restrict_self,
    SYS_lgetxattr,
    SYS_linkat,
    SYS_listen,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_lremovexattr,
    SYS_lseek,
    SYS_lsetxattr,
    SYS_madvise,
    SYS_membarrier,
    SYS_memfd_create,
    SYS_memfd_secret,
    SYS_mincore,
    SYS_mkdirat,
    SYS_mknodat,
    SYS_mlock,
    SYS_mlock2,
    SYS_mlockall,
    SYS_mmap,
    SYS_mprotect,
    SYS_mq_getsetattr,
    SYS_mq_notify,
    SYS_mq_open,
    SYS_mq_timedreceive,
    SYS_mq_timedsend,
    SYS_mq_unlink,
    SYS_mremap,
    SYS_msgctl,
    SYS_msgget,
    SYS_msgrcv,
    SYS_msgsnd,
    SYS_msync,
    SYS_munlock,
    SYS_munlockall,
    SYS_munmap,
    SYS_name_to_handle_at,
    SYS_nanosleep,
    SYS_newfstatat,
    SYS_openat,
    SYS_openat2,
    SYS_pidfd_open,
    SYS_pidfd_send_signal,
    SYS_pipe2,
    SYS_pkey_alloc,
    SYS_pkey_free,
    SYS_pkey_mprotect,
    SYS_ppoll,
    SYS_prctl,
    SYS_pread64,
    SYS_preadv,
    SYS_preadv2,
    SYS_prlimit64,
    SYS_process_mrelease,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_pselect6,
    SYS_ptrace,
    SYS_pwrite64,
    SYS_pwritev,
    SYS_pwritev2,
    SYS_read,
    SYS_readahead,
    SYS_readlinkat,
    SYS_readv,
    SYS_recvfrom,
    SYS_recvmmsg,
    SYS_recvmsg,
    SYS_remap_file_pages,
    SYS_removexattr,
    SYS_renameat,
    SYS_renameat2,
    SYS_restart_syscall,
    SYS_rseq,
    SYS_rt_sigaction,
    SYS_rt_sigpending,
    SYS_rt_sigprocmask,
    SYS_rt_sigqueueinfo,
    SYS_rt_sigreturn,
    SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait,
    SYS_rt_tgsigqueueinfo,
    SYS_sched_getaffinity,
    SYS_sched_getattr,
    SYS_sched_getparam,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_getscheduler,
    SYS_sched_rr_get_interval,
    SYS_sched_setaffinity,
    SYS_sched_setattr,
    SYS_sched_setparam,
    SYS_sched_setscheduler,
    SYS_sched_yield,
    SYS_seccomp,
    SYS_semctl,
    SYS_semget,
    SYS_semop,
    SYS_semtimedop,
    SYS_sendfile,
    SYS_sendmmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_setfsgid,
    SYS_setfsuid,
    SYS_setgid,
    SYS_setgroups,
    SYS_setitimer,
    SYS_setpgid,
    SYS_setpriority,
    SYS_setregid,
    SYS_setresgid,
    SYS_setresuid,
    SYS_setreuid,
    SYS_setrlimit,
    SYS_set_robust_list,
    SYS_setsid,
    SYS_setsockopt,
    SYS_set_tid_address,
    SYS_setuid,
    SYS_setxattr,
    SYS_shmat,
    SYS_shmctl,
    SYS_shmdt,
    SYS_shmget,
    SYS_shutdown,
    SYS_sigaltstack,
    SYS_signalfd4,
    SYS_socket,
    SYS_socketpair,
    SYS_splice,
    SYS_statfs,
    SYS_statx,
    SYS_symlinkat,
    SYS_sync,
    SYS_sync_file_range,
    SYS_syncfs,
    SYS_sysinfo,
    SYS_tee,
    SYS_tgkill,
    SYS_timer_create,
    SYS_timer_delete,
    SYS_timer_getoverrun,
    SYS_timer_gettime,
    SYS_timer_settime,
    SYS_timerfd_create,
    SYS_timerfd_gettime,
    SYS_timerfd_settime,
    SYS_times,
    SYS_tkill,
    SYS_truncate,
    SYS_umask,
    SYS_uname,
    SYS_unlinkat,
    SYS_utimensat,
    SYS_vmsplice,
    SYS_wait4,
    SYS_waitid,
    SYS_write,
    SYS_writev,
];

/// Allowed on x86_64 only (legacy calls that newer architectures lack).
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[libc::c_long] = syscalls![
    SYS_access,
    SYS_alarm,
    SYS_arch_prctl,
    SYS_chmod,
    SYS_chown,
    SYS_creat,
    SYS_dup2,
    SYS_epoll_create,
    SYS_epoll_ctl_old,
    SYS_epoll_wait,
    SYS_epoll_wait_old,
    SYS_eventfd,
    SYS_fork,
    SYS_futimesat,
    SYS_getdents,
    SYS_getpgrp,
    SYS_get_thread_area,
    SYS_inotify_init,
    SYS_lchown,
    SYS_link,
    SYS_lstat,
    SYS_mkdir,
    SYS_mknod,
    SYS_modify_ldt,
    SYS_open,
    SYS_pause,
    SYS_pipe,
    SYS_poll,
    SYS_readlink,
    SYS_rename,
    SYS_rmdir,
    SYS_select,
    SYS_set_thread_area,
    SYS_signalfd,
    SYS_stat,
    SYS_symlink,
    SYS_time,
    SYS_unlink,
    SYS_utime,
    SYS_utimes,
    SYS_vfork,
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_ARCH: &[libc::c_long] = &[];

/// Allowed calls the `libc` crate has no constant for, by number (from the
/// kernel's uapi headers: `asm/unistd_64.h`, `asm-generic/unistd.h`).
#[cfg(target_arch = "x86_64")]
const ALLOWED_NUMBERS: &[libc::c_long] = &[
    333, // io_pgetevents
];
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
const ALLOWED_NUMBERS: &[libc::c_long] = &[
    292, // io_pgetevents
];

/// `clone` flags that create namespaces (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC
/// |NEWUSER|NEWPID|NEWNET), which Docker's profile refuses without
/// `CAP_SYS_ADMIN`.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// The personas `personality(2)` may switch to.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The audit architecture the filter accepts; system calls made through
/// another ABI (e.g. 32-bit x86 on x86_64) kill the process, as they would
/// otherwise bypass the number checks.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH: u32 = 0xC000_00F3;

// Classic BPF opcodes (linux/bpf_common.h) and seccomp_data offsets
// (linux/seccomp.h: nr at 0, arch at 4, args[i] at 16 + 8i; the low word of
// a 64-bit argument comes first on little-endian machines).
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARG0_LO: u32 = 16;
const OFFSET_ARG0_HI: u32 = 20;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// What the filter does with one system call number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Deny,
    /// `clone`: allowed unless it asks for a namespace.
    Clone,
    /// `personality`: allowed for the harmless personas only.
    Personality,
    /// `clone3`: `ENOSYS`, so that libc falls back to `clone`.
    Clone3,
}

/// The verdict of the calls checked beyond their number.
fn verdict_special(nr: i64) -> Option<Verdict> {
    match nr {
        libc::SYS_clone => Some(Verdict::Clone),
        libc::SYS_personality => Some(Verdict::Personality),
        libc::SYS_clone3 => Some(Verdict::Clone3),
        _ => None,
    }
}

/// The filter's verdict for `nr`, straight from the lists (the tests'
/// reference; [`compile`] answers the same by binary search).
#[cfg(test)]
fn verdict(nr: i64) -> Verdict {
    verdict_special(nr).unwrap_or(
        if ALLOWED.contains(&nr) || ALLOWED_ARCH.contains(&nr) || ALLOWED_NUMBERS.contains(&nr) {
            Verdict::Allow
        } else {
            Verdict::Deny
        },
    )
}

/// A compiled classic-BPF seccomp program.
pub struct Program(Vec<libc::sock_filter>);

impl Program {
    /// Installs the filter on the calling thread. `no_new_privs` must be set.
    pub fn install(&self) -> std::io::Result<()> {
        let prog = libc::sock_fprog {
            len: u16::try_from(self.0.len()).expect("seccomp program fits u16"),
            filter: self.0.as_ptr().cast_mut(),
        };
        // SAFETY: seccomp(SET_MODE_FILTER) reads `prog` and the instructions
        // it points to, which outlive the call; the kernel copies them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Code for a run of the number line, with jumps to the argument checks
/// still to resolve (instruction index, verdict).
#[derive(Default)]
struct Block {
    code: Vec<libc::sock_filter>,
    fixups: Vec<(usize, Verdict)>,
}

impl Block {
    fn append(&mut self, other: Block) {
        let base = self.code.len();
        self.code.extend(other.code);
        self.fixups
            .extend(other.fixups.into_iter().map(|(i, v)| (base + i, v)));
    }
}

/// A balanced search over `runs` (start number, verdict; sorted, each run
/// lasting until the next one starts): about two instructions per run and
/// a dozen comparisons per system call, where a list of equality tests
/// would cost one instruction per allowed call (~1,500 here) at install
/// time and on every call.
fn search(runs: &[(u32, Verdict)]) -> Block {
    if let [(_, v)] = runs {
        let mut b = Block::default();
        match v {
            Verdict::Allow => b.code.push(stmt(RET_K, RET_ALLOW)),
            Verdict::Deny => b.code.push(stmt(RET_K, RET_EPERM)),
            Verdict::Clone3 => b.code.push(stmt(RET_K, RET_ENOSYS)),
            special => {
                b.fixups.push((0, *special));
                b.code.push(stmt(JMP_JA, 0));
            }
        }
        return b;
    }
    let mid = runs.len() / 2;
    let (left, right) = (search(&runs[..mid]), search(&runs[mid..]));
    let split = runs[mid].0;
    let mut b = Block::default();
    match u8::try_from(left.code.len()) {
        Ok(skip) => b.code.push(jump(JMP_JGE_K, split, skip, 0)),
        Err(_) => {
            // Conditional jumps reach 255 instructions; hop over a long jump.
            b.code.push(jump(JMP_JGE_K, split, 0, 1));
            b.code.push(stmt(JMP_JA, left.code.len() as u32));
        }
    }
    b.append(left);
    b.append(right);
    b
}

/// Compiles the filter: Docker's allow-list, `clone` without namespace
/// flags, the harmless personas, `clone3` → `ENOSYS`, `EPERM` otherwise.
pub fn compile() -> Program {
    let mut numbers: Vec<i64> = ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .chain(ALLOWED_NUMBERS)
        .copied()
        .collect();
    numbers.extend([libc::SYS_clone, libc::SYS_personality, libc::SYS_clone3]);
    numbers.sort_unstable();
    numbers.dedup();
    // verdict() scans the allow-lists; here (once per sandbox start) the
    // sorted list answers "allowed?" by binary search.
    let verdict_of = |n: i64| match verdict_special(n) {
        Some(v) => v,
        None if numbers.binary_search(&n).is_ok() => Verdict::Allow,
        None => Verdict::Deny,
    };
    // The number line as runs of equal verdicts, from 0 to u32::MAX.
    let mut runs: Vec<(u32, Verdict)> = vec![(0, verdict_of(0))];
    for &nr in &numbers {
        for n in [nr, nr + 1] {
            let v = verdict_of(n);
            if runs.last().map(|r| r.1) != Some(v) {
                runs.push((n as u32, v));
            }
        }
    }

    let mut code = vec![
        stmt(LD_W_ABS, OFFSET_ARCH),
        jump(JMP_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(RET_K, RET_KILL),
        stmt(LD_W_ABS, OFFSET_NR),
    ];
    let tree = search(&runs);
    let base = code.len();
    code.extend(tree.code);

    // Argument checks, after the search so every jump goes forward.
    let clone_at = code.len();
    code.extend([
        stmt(LD_W_ABS, OFFSET_ARG0_LO),
        jump(JMP_JSET_K, CLONE_NAMESPACE_FLAGS as u32, 0, 1),
        stmt(RET_K, RET_EPERM),
        stmt(RET_K, RET_ALLOW),
    ]);
    let personality_at = code.len();
    code.push(stmt(LD_W_ABS, OFFSET_ARG0_HI));
    code.push(jump(JMP_JEQ_K, 0, 1, 0));
    code.push(stmt(RET_K, RET_EPERM));
    code.push(stmt(LD_W_ABS, OFFSET_ARG0_LO));
    for (i, &p) in PERSONALITIES.iter().enumerate() {
        // On a match, jump to the ALLOW after the last test.
        let to_allow = (PERSONALITIES.len() - i) as u8;
        code.push(jump(JMP_JEQ_K, p as u32, to_allow, 0));
    }
    code.push(stmt(RET_K, RET_EPERM));
    code.push(stmt(RET_K, RET_ALLOW));

    for (i, v) in tree.fixups {
        let at = base + i;
        let target = match v {
            Verdict::Clone => clone_at,
            Verdict::Personality => personality_at,
            _ => unreachable!("only argument checks are jumped to"),
        };
        code[at].k = (target - at - 1) as u32;
    }
    Program(code)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    use rbuild_testkit::skipped;

    /// Runs `prog` the way the kernel does, on one system call.
    fn run(prog: &Program, arch: u32, nr: u32, arg0: u64) -> u32 {
        let load = |off: u32| match off {
            OFFSET_NR => nr,
            OFFSET_ARCH => arch,
            OFFSET_ARG0_LO => arg0 as u32,
            OFFSET_ARG0_HI => (arg0 >> 32) as u32,
            other => panic!("unexpected load at {other}"),
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog.0[pc];
            pc += 1;
            let taken = match i.code {
                RET_K => return i.k,
                LD_W_ABS => {
                    acc = load(i.k);
                    continue;
                }
                JMP_JA => {
                    pc += i.k as usize;
                    continue;
                }
                JMP_JEQ_K => acc == i.k,
                JMP_JGE_K => acc >= i.k,
                JMP_JSET_K => acc & i.k != 0,
                other => panic!("unexpected opcode {other:#x}"),
            };
            pc += usize::from(if taken { i.jt } else { i.jf });
        }
    }

    #[test]
    fn the_search_gives_every_number_its_verdict() {
        let prog = compile();
        assert!(prog.0.len() < 400, "{} instructions", prog.0.len());
        for nr in (0..1200u32).chain([0x4000_0000, 0x4000_0001, u32::MAX]) {
            let want = match verdict(i64::from(nr)) {
                Verdict::Allow => RET_ALLOW,
                Verdict::Clone3 => RET_ENOSYS,
                Verdict::Deny => RET_EPERM,
                Verdict::Clone | Verdict::Personality => continue,
            };
            assert_eq!(run(&prog, AUDIT_ARCH, nr, 0), want, "syscall {nr}");
        }
        assert_eq!(run(&prog, 0x4000_0003, libc::SYS_read as u32, 0), RET_KILL);
    }

    #[test]
    fn clone_and_personality_look_at_their_argument() {
        let prog = compile();
        let clone = libc::SYS_clone as u32;
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(run(&prog, AUDIT_ARCH, clone, thread), RET_ALLOW);
        assert_eq!(
            run(&prog, AUDIT_ARCH, clone, libc::SIGCHLD as u64),
            RET_ALLOW
        );
        for ns in [libc::CLONE_NEWNS, libc::CLONE_NEWUSER, libc::CLONE_NEWNET] {
            let flags = (ns | libc::SIGCHLD) as u64;
            assert_eq!(run(&prog, AUDIT_ARCH, clone, flags), RET_EPERM, "{ns:#x}");
        }
        let personality = libc::SYS_personality as u32;
        for p in PERSONALITIES {
            assert_eq!(run(&prog, AUDIT_ARCH, personality, *p), RET_ALLOW, "{p:#x}");
        }
        for p in [0x1u64, 0x0040_0000, 0x1_0000_0000] {
            assert_eq!(run(&prog, AUDIT_ARCH, personality, p), RET_EPERM, "{p:#x}");
        }
    }

    /// Docker's default seccomp profile (moby `profiles/seccomp/default.json`):
    /// the names it allows unconditionally, for every architecture (a name
    /// an architecture lacks is skipped there).
    const DOCKER_ALLOWED: &str = "
    accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown
    chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
    clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
    copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl
    epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2
    execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64
    fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl
    fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat
    fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64
    futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid
    geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid
    getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid
    getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
    get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
    inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
    io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
    io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
    landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat
    listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
    madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
    mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
    mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink
    mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at
    nanosleep newfstatat _newselect open openat openat2 pause pidfd_open
    pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
    ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
    pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv
    recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename
    renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
    rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
    rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
    sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
    sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
    sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop
    semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto
    setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32
    setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
    setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt
    set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget
    shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair
    splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range
    syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
    timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
    timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill
    truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
    utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
";

    /// Allowed by Docker's profile under a condition the sandbox meets:
    /// `chroot` with `CAP_SYS_CHROOT` (a default capability), `ptrace` and
    /// `process_vm_*` on kernels >= 4.8, `socket`/`personality`/`clone`
    /// with argument checks (tested above), per-architecture calls.
    const DOCKER_ALLOWED_IF: &[&str] = &[
        "chroot",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "socket",
        "personality",
        "clone",
        "arch_prctl",
        "modify_ldt",
        "sync_file_range2",
    ];

    /// Where rbuild follows a newer Docker than the list above: io_uring
    /// is refused since Docker 25 (moby#46762).
    const REFUSED_SINCE_DOCKER_25: &[&str] =
        &["io_uring_enter", "io_uring_register", "io_uring_setup"];

    /// The kernel's system call numbers for the architecture the tests run
    /// on, from its uapi headers through the C preprocessor (`gcc -dM -E`,
    /// `<asm/unistd.h>`): a table independent of the `libc` crate's
    /// constants the filter is built from. `None` without gcc or headers.
    fn kernel_numbers() -> Option<HashMap<String, u32>> {
        use std::io::Write as _;
        let mut child = std::process::Command::new("gcc")
            .args(["-dM", "-E", "-x", "c", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        child
            .stdin
            .take()?
            .write_all(b"#include <asm/unistd.h>\n")
            .ok()?;
        let out = child.wait_with_output().ok()?;
        if !out.status.success() {
            return None;
        }
        // `#define __NR_fstat 5`, or on generic architectures
        // `#define __NR_fstat __NR3264_fstat` and `#define __NR3264_fstat 80`.
        let defines: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.strip_prefix("#define ")?.splitn(2, ' ');
                Some((w.next()?.to_string(), w.next()?.trim().to_string()))
            })
            .collect();
        let resolve = |name: &str| -> Option<u32> {
            let mut v = defines.get(name)?.as_str();
            for _ in 0..8 {
                let t = v.trim_matches(|c| c == '(' || c == ')');
                if let Ok(n) = t.parse() {
                    return Some(n);
                }
                v = defines.get(t)?.as_str();
            }
            None
        };
        let numbers: HashMap<String, u32> = defines
            .keys()
            .filter_map(|k| {
                let name = k.strip_prefix("__NR_")?;
                Some((name.to_string(), resolve(k)?))
            })
            .collect();
        (numbers.len() > 200).then_some(numbers)
    }

    /// Regression: `fstat` (x86_64 syscall 5) was refused with EPERM, so
    /// Go's `os.File.Stat`, musl and older glibc failed in every RUN.
    /// Every call Docker's default profile allows must be allowed, and
    /// nothing beyond it (but the documented differences), checked by
    /// number against the kernel's own table, through the compiled program.
    #[test]
    fn the_filter_allows_exactly_what_dockers_default_profile_allows() {
        let Some(numbers) = kernel_numbers() else {
            skipped(
                "the_filter_allows_exactly_what_dockers_default_profile_allows",
                "needs gcc and the kernel's uapi headers (linux-libc-dev)",
            );
            return;
        };
        let prog = compile();
        let docker: Vec<&str> = DOCKER_ALLOWED
            .split_whitespace()
            .chain(DOCKER_ALLOWED_IF.iter().copied())
            .filter(|n| !REFUSED_SINCE_DOCKER_25.contains(n))
            .collect();
        let mut refused = Vec::new();
        for name in &docker {
            let Some(&nr) = numbers.get(*name) else {
                continue; // not a system call of this architecture
            };
            if run(&prog, AUDIT_ARCH, nr, 0) != RET_ALLOW {
                refused.push(format!("{name} ({nr})"));
            }
        }
        assert!(
            refused.is_empty(),
            "Docker allows, the filter refuses: {refused:?}"
        );
        assert!(docker.contains(&"fstat") && numbers.contains_key("fstat"));

        let mut extra = Vec::new();
        for (name, &nr) in &numbers {
            let allowed = run(&prog, AUDIT_ARCH, nr, 0) == RET_ALLOW;
            if allowed && !docker.contains(&name.as_str()) {
                extra.push(format!("{name} ({nr})"));
            }
        }
        extra.sort();
        assert!(
            extra.is_empty(),
            "the filter allows, Docker refuses: {extra:?}"
        );
        for name in REFUSED_SINCE_DOCKER_25 {
            if let Some(&nr) = numbers.get(*name) {
                assert_eq!(run(&prog, AUDIT_ARCH, nr, 0), RET_EPERM, "{name}");
            }
        }
    }

    #[test]
    fn dangerous_syscalls_are_not_allowed() {
        let all: Vec<libc::c_long> = ALLOWED
            .iter()
            .chain(ALLOWED_ARCH)
            .chain(ALLOWED_NUMBERS)
            .copied()
            .collect();
        for nr in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_kexec_load,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_open_by_handle_at,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_pivot_root,
            libc::SYS_reboot,
            libc::SYS_userfaultfd,
        ] {
            assert!(!all.contains(&nr), "syscall {nr} must not be allowed");
        }
    }
}
