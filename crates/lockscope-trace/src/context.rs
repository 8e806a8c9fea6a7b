//! Recognising interrupt context from a kernel stack, as the paper does
//! (section 5.2): a lock taken while serving a hard or soft interrupt, or an
//! NMI, is not caused by the interrupted process, whatever `current` is.

/// Functions that only appear on a stack while an interrupt is being served.
const INTERRUPT_ENTRY_PREFIXES: &[&str] = &[
    "asm_sysvec_",
    "sysvec_",
    "asm_common_interrupt",
    "common_interrupt",
    "asm_exc_nmi",
    "exc_nmi",
    "nmi_handle",
    "__do_softirq",
    "handle_softirqs",
    "__softirqentry_text_start",
    "do_softirq",
    "__irq_exit_rcu",
    "irq_exit_rcu",
    "hrtimer_interrupt",
    "__sysvec_",
    "handle_irq_event",
    "handle_edge_irq",
    "handle_fasteoi_irq",
];

/// Whether a stack of function names holds an interrupt entry.
pub fn is_interrupt_stack<'a>(functions: impl IntoIterator<Item = &'a str>) -> bool {
    functions.into_iter().any(|f| INTERRUPT_ENTRY_PREFIXES.iter().any(|p| f.starts_with(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hard_and_soft_interrupts_only() {
        assert!(is_interrupt_stack(["_raw_spin_lock", "rcu_core", "handle_softirqs", "irq_exit_rcu"]));
        assert!(is_interrupt_stack(["_raw_spin_lock", "hrtimer_interrupt", "__sysvec_apic_timer_interrupt"]));
        assert!(!is_interrupt_stack(["_raw_spin_lock", "d_alloc", "path_openat", "do_sys_openat2"]));
    }
}
