//! Progress display shared by the long-running commands.

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner with `template`; hidden on a console without cursor control
/// (TERM=dumb, e.g. a guest's serial line), where it would only print noise.
pub fn spinner(template: &str) -> ProgressBar {
    let bar = if std::env::var("TERM").is_ok_and(|t| t == "dumb") { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    bar.set_style(ProgressStyle::with_template(template).expect("valid progress template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// A bar of `len` steps with `template`; hidden where a spinner would be.
pub fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = if std::env::var("TERM").is_ok_and(|t| t == "dumb") { ProgressBar::hidden() } else { ProgressBar::new(len) };
    bar.set_style(ProgressStyle::with_template(template).expect("valid progress template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
