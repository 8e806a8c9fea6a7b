//! How a workload tells how it ended where lockscope cannot wait for it: in
//! a container, its process is the runtime's child, not lockscope's. When
//! `LOCKSCOPE_EXIT_NOTE` names a file, the lockscope binary writes its exit
//! status there as it exits ("exit status 1: --size must be at least 1
//! byte"), and the platform reads it back. A workload killed by a signal
//! writes nothing.

use std::path::Path;

/// The environment variable naming the file.
pub const VAR: &str = "LOCKSCOPE_EXIT_NOTE";

/// Writes the note, if asked to; `why` is the error, empty on success.
pub fn write(code: i32, why: &str) {
    if let Some(path) = std::env::var_os(VAR) {
        let first_line = why.lines().map(str::trim).find(|l| !l.is_empty());
        let note = match first_line {
            Some(why) if code != 0 => format!("exit status {code}: {why}"),
            _ => format!("exit status {code}"),
        };
        // Best effort: the exit status itself is still the process's.
        let _ = std::fs::write(path, note);
    }
}

/// The note at `path`, if the workload wrote one.
pub fn read(path: &Path) -> Option<String> {
    let note = std::fs::read_to_string(path).ok()?;
    Some(note.trim().chars().take(300).collect::<String>()).filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_says_the_status_and_the_first_line_of_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("note");
        std::env::set_var(VAR, &path);
        write(2, "error: unexpected argument '--bogus' found\n\nUsage: lockscope workload mem");
        assert_eq!(read(&path).as_deref(), Some("exit status 2: error: unexpected argument '--bogus' found"));
        write(0, "");
        assert_eq!(read(&path).as_deref(), Some("exit status 0"));
        std::env::remove_var(VAR);
        assert_eq!(read(&dir.path().join("none")), None);
    }
}
