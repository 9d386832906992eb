//! This machine's name.

/// The host name, for reports, notifications, lock owners and container labels; `None`
/// when the system cannot say. A name that is not UTF-8 is shown lossily rather than lost.
pub fn hostname() -> Option<String> {
    nix::unistd::gethostname().ok().map(|h| h.to_string_lossy().into_owned())
}
