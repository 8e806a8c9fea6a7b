//! Which stack frames are the tracer's own or the lock implementation's, so
//! a stack can be shown from the code that asked for the lock.

/// Frames of the BPF machinery that recorded the event.
const TRACER_PREFIXES: &[&str] = &["bpf_prog_", "bpf_trace_run", "__bpf_trace_", "__traceiter_", "bpf_trampoline_"];

/// Frames inside lock primitives and their slow paths.
const LOCK_PREFIXES: &[&str] = &[
    "queued_spin_lock_slowpath",
    "native_queued_spin_lock_slowpath",
    "__pv_queued_spin_lock_slowpath",
    "queued_read_lock_slowpath",
    "queued_write_lock_slowpath",
    "_raw_spin_",
    "_raw_read_",
    "_raw_write_",
    "do_raw_spin_lock",
    "mutex_lock",
    "mutex_trylock",
    "__mutex_lock",
    "mutex_spin_on_owner",
    "mutex_optimistic_spin",
    "osq_lock",
    "rwsem_down_",
    "__rwsem_",
    "rwsem_optimistic_spin",
    "down_read",
    "down_write",
    "__down",
    "down",
    "rt_mutex_",
    "__rt_mutex_",
    "percpu_down_",
    "__percpu_down_",
    "percpu_rwsem_wait",
];

use crate::model::Frame;

fn function_of(frame: &Frame) -> &str {
    frame.function.as_ref().map_or("", |(name, _)| name.as_str())
}

pub fn is_tracer_frame(frame: &Frame) -> bool {
    let f = function_of(frame);
    TRACER_PREFIXES.iter().any(|p| f.starts_with(p))
}

pub fn is_lock_frame(frame: &Frame) -> bool {
    is_lock_function(function_of(frame))
}

/// Whether `f` is a lock primitive or one of its slow paths.
pub fn is_lock_function(f: &str) -> bool {
    LOCK_PREFIXES
        .iter()
        .any(|p| f == *p || (p.ends_with('_') && f.starts_with(p)) || f.starts_with(&format!("{p}_")) || f.starts_with(&format!("{p}.")))
}

/// The stack without the tracer's frames (innermost first).
pub fn without_tracer(frames: Vec<Frame>) -> Vec<Frame> {
    frames.into_iter().filter(|f| !is_tracer_frame(f)).collect()
}

/// The first frame outside the tracer and the lock implementation: the call site.
pub fn call_site(frames: &[Frame]) -> Option<&Frame> {
    call_site_index(frames).map(|i| &frames[i])
}

/// Where the call site is in `frames`; the frames after it are its callers.
pub fn call_site_index(frames: &[Frame]) -> Option<usize> {
    frames.iter().position(|f| !is_tracer_frame(f) && !is_lock_frame(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as `function+0xoffset`.
    fn frame(text: &str) -> Frame {
        let (name, offset) = text.split_once("+0x").unwrap();
        Frame { addr: 0, function: Some((name.to_owned(), u64::from_str_radix(offset, 16).unwrap())), module: None }
    }

    #[test]
    fn finds_the_caller_of_the_lock() {
        let stack: Vec<Frame> = [
            "bpf_prog_6deef7357e7b4530_lks_btf_begin+0x1a",
            "bpf_trace_run2+0x5e",
            "__traceiter_contention_begin+0x25",
            "queued_spin_lock_slowpath+0x1f2",
            "_raw_spin_lock+0x29",
            "d_alloc+0x7a",
            "path_openat+0x5f1",
        ]
        .into_iter()
        .map(frame)
        .collect();
        assert_eq!(call_site(&stack).map(Frame::to_string).as_deref(), Some("d_alloc+0x7a"));
        assert_eq!(without_tracer(stack)[0].to_string(), "queued_spin_lock_slowpath+0x1f2");
    }

    #[test]
    fn lock_names_do_not_swallow_unrelated_functions() {
        assert!(is_lock_frame(&frame("down_write+0x10")));
        assert!(is_lock_frame(&frame("down+0x4")));
        assert!(is_lock_frame(&frame("__mutex_lock.constprop.0+0x80")));
        assert!(!is_lock_frame(&frame("downgrade_write+0x4")));
        assert!(!is_lock_frame(&frame("mutex_unlock+0x4")));
        assert!(!is_lock_frame(&frame("ext4_create+0x4")));
    }
}
