//! The few process-level system calls the agent needs, each behind a safe function: liveness of
//! a pid (a zombie counts as dead), signals to a process or its group, the parent-death signal
//! for supervised children, and `setsid` for daemons that must outlive their parent.

use std::io;

/// Whether `pid` names a live process. A zombie (exited, not yet reaped) is dead: `kill(pid, 0)`
/// alone would call it alive.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else { return false };
    if raw <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let exists = unsafe { libc::kill(raw, 0) } == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself hold `)`.
        Ok(stat) => match stat.rfind(')') {
            Some(end) => !matches!(stat[end + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => true,
    }
}

/// Sends `signal` to one process. A process that is already gone is not an error.
pub fn signal_pid(pid: u32, signal: i32) {
    if let Ok(raw) = libc::pid_t::try_from(pid)
        && raw > 0
    {
        // SAFETY: plain kill(2) on a positive pid.
        unsafe { libc::kill(raw, signal) };
    }
}

/// Sends `signal` to the process group `pgid`.
pub fn signal_group(pgid: u32, signal: i32) {
    if let Ok(raw) = libc::pid_t::try_from(pgid)
        && raw > 1
    {
        // SAFETY: kill(2) on a negative pid signals that group; pgid > 1 excludes "every process".
        unsafe { libc::kill(-raw, signal) };
    }
}

/// Signal number for a name as bpm and monit write it (`TERM`, `SIGINT`, `kill`).
pub fn signal_number(name: &str) -> Option<i32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    Some(match bare {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "HUP" => libc::SIGHUP,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        _ => return None,
    })
}

/// For `pre_exec`: the child is killed when the process that spawned it dies, so job processes
/// never outlive a crashed agent (a VM crash on the local CPI). `parent` is the spawner's pid,
/// taken before the fork: if it already died, the child exits at once.
///
/// The signal follows the spawning *thread*: spawn only from threads that live as long as the
/// process (tokio worker threads, not `spawn_blocking` ones).
pub fn die_with_parent(parent: u32) -> io::Result<()> {
    // SAFETY: prctl/getppid/_exit are async-signal-safe and touch no memory of ours.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if u32::try_from(libc::getppid()).ok() != Some(parent) {
            libc::_exit(1);
        }
    }
    Ok(())
}

/// For `pre_exec`: a new session, so the child survives the SSH session (and its hangup) that
/// started it.
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid is async-signal-safe.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Describes a wait status as the protocol's `last_exit` does: `exit 1`, `signal 9`.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "exited".to_string(),
    }
}

/// An exit status as a shell reports it: the code, or 128 + the signal.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_alive_and_reaped_child_is_not() {
        assert!(pid_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Before reaping the exited child is a zombie, which counts as dead.
        for _ in 0..200 {
            if !pid_alive(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!pid_alive(pid), "zombie reported alive");
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_number("TERM"), Some(libc::SIGTERM));
        assert_eq!(signal_number("SIGINT"), Some(libc::SIGINT));
        assert_eq!(signal_number("bogus"), None);
    }
}
