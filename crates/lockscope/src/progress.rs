//! Progress display shared by the long-running commands.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress can be drawn in place: stderr is a terminal with cursor control.
fn drawable() -> bool {
    std::io::stderr().is_terminal() && !std::env::var("TERM").is_ok_and(|t| t == "dumb")
}

/// A spinner with `template`; hidden where it cannot be drawn in place
/// (TERM=dumb, e.g. a guest's serial line, or not a terminal).
pub fn spinner(template: &str) -> ProgressBar {
    let bar = if drawable() { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template(template).expect("valid progress template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Progress through a known number of steps: a bar where it can be drawn;
/// elsewhere (a log, CI, a serial console) a line each time the step's
/// message changes, so that a long run is never silent.
pub struct Steps {
    /// Hidden where it cannot be drawn: then plain lines are printed.
    bar: ProgressBar,
    /// The last headline printed (plain mode, [`Steps::set_status`]).
    printed: std::cell::RefCell<String>,
}

impl Steps {
    pub fn new(len: u64, template: &str) -> Steps {
        let plain = !drawable();
        let bar = ProgressBar::with_draw_target(Some(len), if plain { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
        bar.set_style(ProgressStyle::with_template(template).expect("valid progress template"));
        if !plain {
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
        }
        Steps { bar, printed: Default::default() }
    }

    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        if self.bar.is_hidden() && message != self.bar.message() {
            let len = self.bar.length().unwrap_or(0);
            eprintln!("[{}/{len}] {message}", (self.bar.position() + 1).min(len));
        }
        self.bar.set_message(message);
    }

    /// A status whose `detail` changes often (a rate): where no bar can be
    /// drawn, only a new `headline` prints a line.
    pub fn set_status(&self, headline: &str, detail: &str) {
        if self.bar.is_hidden() && *self.printed.borrow() != headline {
            eprintln!("{headline}");
            *self.printed.borrow_mut() = headline.to_owned();
        }
        self.bar.set_message(format!("{headline}{detail}"));
    }

    pub fn set_position(&self, position: u64) {
        self.bar.set_position(position);
    }

    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}
