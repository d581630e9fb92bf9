//! The `rosh-agent` binary: the VM side alone (agent verbs and the process supervisor), which the
//! director installs on machines reached through OpenSSH. See `rosh::cli::agent`.

fn main() -> std::process::ExitCode {
    rosh::cli::agent::standalone_main()
}
